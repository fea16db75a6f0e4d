from __future__ import annotations

from django.contrib import admin

from announcements.models import Announcement

admin.site.register(Announcement)
