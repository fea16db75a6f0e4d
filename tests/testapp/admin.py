from __future__ import annotations

from django.contrib import admin

from tests.testapp.models import Note

admin.site.register(Note)
