from __future__ import annotations

from django.urls import re_path

from schemata.storage import serve

urlpatterns = [re_path(r"^media/(?P<path>.*)$", serve)]
