from __future__ import annotations

from django.contrib import admin
from django.urls import path

from tests import views

urlpatterns = [
    path("", views.whoami),
    path("async/", views.awhoami),
    path("notes/", views.create_note),
    path("notes/non-atomic/", views.create_note_non_atomic),
    path("notes/async/", views.acreate_note),
    path("session/", views.remember),
    path("stream/", views.stream),
    path("astream/", views.astream),
    path("drf/reject/", views.RejectAfterWriting.as_view()),
    path("login/", views.log_in),
    path("me/", views.me),
    path("drf/me/", views.ApiMe.as_view()),
    path("admin/", admin.site.urls),
]
