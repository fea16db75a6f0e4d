from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from notes.models import Note, Tag


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["title", "created_at", "tag_list"]
    list_filter = ["tags"]
    search_fields = ["title", "body"]
    filter_horizontal = ["tags"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Note]:
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="tags")
    def tag_list(self, note: Note) -> str:
        return ", ".join(tag.name for tag in note.tags.all())


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    search_fields = ["name"]
