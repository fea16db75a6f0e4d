from __future__ import annotations

from django.contrib import admin
from django.urls import path
from notes import views

urlpatterns = [
    path("", views.board, name="board"),
    path("notes/<int:pk>/delete/", views.delete_note, name="delete-note"),
    path("admin/", admin.site.urls),
]
