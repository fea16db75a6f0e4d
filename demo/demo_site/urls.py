from __future__ import annotations

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path
from notes import views

from schemata.storage import serve

urlpatterns = [
    path("", views.board, name="board"),
    path("notes/<int:pk>/delete/", views.delete_note, name="delete-note"),
    path("admin/", admin.site.urls),
    # Development only (static() adds nothing unless DEBUG): each host gets its schema's files.
    *static(settings.MEDIA_URL, view=serve),
]
