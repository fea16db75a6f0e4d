"""Sample data. Factories create rows in the active schema, as any ORM call does."""

from __future__ import annotations

from typing import Any

import factory
from factory.django import DjangoModelFactory

import schemata
from notes.models import Note, Tag


def tenant_label() -> str:
    schema = schemata.get_current_schema()
    return schema.name.capitalize() if schema else "Public"


class TagFactory(DjangoModelFactory[Tag]):
    class Meta:
        model = Tag
        django_get_or_create = ["name"]

    name = factory.Iterator(["idea", "todo", "meeting", "customer", "later"])


class NoteFactory(DjangoModelFactory[Note]):
    class Meta:
        model = Note

    title = factory.Sequence(lambda n: f"{tenant_label()} note {n}")
    body = factory.Faker("paragraph", nb_sentences=2)

    @factory.post_generation
    def tags(self, create: bool, extracted: list[Tag] | None, **kwargs: Any) -> None:
        if create:
            self.tags.set(TagFactory.create_batch(2) if extracted is None else extracted)
