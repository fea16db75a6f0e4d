from __future__ import annotations

from announcements.models import Announcement
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

import schemata
from notes.forms import NoteForm
from notes.models import Note, Tag
from notes.signup import TEMPLATE, signup, tenant_links


def board(request: HttpRequest) -> HttpResponse:
    """The tenant's notes, and a form to add one; on the template's host, the sign-up page."""
    if request.schema.name == TEMPLATE:  # type: ignore[attr-defined]
        return signup(request)
    form = NoteForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        with schemata.atomic():  # the note, its tags and their links: all or nothing
            note = form.save()
            note.tags.set(
                [Tag.objects.get_or_create(name=name)[0] for name in form.cleaned_data["tags"]]
            )
        messages.success(request, f"Added {note.title!r}.")
        return redirect(f"{reverse('board')}#note-{note.pk}")
    return render(
        request,
        "notes/board.html",
        {
            "schema": request.schema,  # type: ignore[attr-defined]
            "notes": Note.objects.prefetch_related("tags"),
            # A shared model: read from public through the tenant's own connection.
            "announcements": Announcement.objects.all()[:3],
            "form": form,
            "tenants": tenant_links(request),
            # Set by the sign-up page's redirect: milliseconds it took to create the tenant.
            "ready": request.GET.get("ready"),
        },
    )


@require_POST
def delete_note(request: HttpRequest, pk: int) -> HttpResponse:
    note = get_object_or_404(Note, pk=pk)  # only this tenant's notes: pk is per schema
    with schemata.atomic():  # the note and its tag links
        note.delete()
    if note.attachment:  # files are not rolled back: removed once the rows are gone
        note.attachment.delete(save=False)
    messages.success(request, f"Deleted {note.title!r}.")
    return redirect("board")
