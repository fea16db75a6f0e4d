from __future__ import annotations

from typing import Any

from announcements.models import Announcement
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from factory.random import reseed_random

import schemata
from notes.factories import NoteFactory
from notes.models import Note
from notes.signup import TEMPLATE

NOTES_PER_SCHEMA = 5


class Command(BaseCommand):
    help = (
        "Create the superuser admin (password admin) and sample notes in every schema, or in "
        "the active one under each_schema. Safe to re-run: a schema with notes is left alone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        active = schemata.get_current_schema()
        if active is not None:  # each_schema seed_demo: it prefixes our lines with the schema
            with schemata.atomic():
                self.seed(active.name, prefix="")
            return
        for name in dict.fromkeys(d["schema_name"] for d in settings.SCHEMATA_DOMAINS.values()):
            with schemata.override(name), schemata.atomic():
                self.seed(name, prefix=f"[{name}] ")

    def seed(self, name: str, prefix: str) -> None:
        if name == TEMPLATE:  # new tenants copy it, rows included: it stays empty
            self.stdout.write(f"{prefix}the template of new tenants, left empty")
            return
        user_model = get_user_model()
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", f"admin@{name}.localhost", "admin")
            self.stdout.write(f"{prefix}created the superuser admin (password admin)")
        if not Announcement.objects.exists():  # shared: the same table from every schema
            Announcement.objects.create(text="Welcome to the django-schemata demo.")
            self.stdout.write(f"{prefix}created the shared announcement")
        if Note.objects.exists():
            self.stdout.write(f"{prefix}has notes already, not seeded")
            return
        # The same sample text on every fresh database, different for each tenant.
        reseed_random(name)
        NoteFactory.reset_sequence(1)
        NoteFactory.create_batch(NOTES_PER_SCHEMA)
        self.stdout.write(f"{prefix}seeded {NOTES_PER_SCHEMA} notes")
