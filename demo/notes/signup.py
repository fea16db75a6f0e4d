"""The sign-up site at http://localhost:8000/: a new tenant, served at once, no restart."""

from __future__ import annotations

import random
import re
import time

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

import schemata
from schemata.registry import all_schemas

#: The schema new tenants are copied from: migrated like the others, never given any data.
TEMPLATE = "template"
COLOURS = ["#2c7a7b", "#6b46c1", "#b7791f", "#c05621", "#2a4365", "#702459"]


class SignUpForm(forms.Form):
    name = forms.CharField(
        max_length=20,
        help_text="Lower-case letters and digits; your board will be at <name>.localhost.",
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip().lower()
        if not re.fullmatch(r"[a-z][a-z0-9]*", name):
            raise forms.ValidationError(
                "Use lower-case letters and digits, starting with a letter."
            )
        return name


def tenant_links(request: HttpRequest) -> list[tuple[str, str]]:
    """(domain, URL) of every tenant's board, the settings' and those signed up since."""
    port = request.get_port()
    suffix = f":{port}" if port not in ("80", "443") else ""
    return [
        (schema.domains[0], f"//{schema.domains[0]}{suffix}/")
        for schema in all_schemas().values()
        if schema.name != TEMPLATE and schema.domains
    ]


def signup(request: HttpRequest) -> HttpResponse:
    """List the tenants; create one (a copy of the template schema) and send the user there."""
    form = SignUpForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"]
        domain = f"{name}.localhost"
        started = time.perf_counter()
        try:
            schemata.create_tenant(
                domain, name, template=TEMPLATE, plan="free", colour=random.choice(COLOURS)
            )
        except schemata.SchemataError as exc:
            form.add_error("name", str(exc))
        else:
            took = round((time.perf_counter() - started) * 1000)
            port = request.get_port()
            suffix = f":{port}" if port not in ("80", "443") else ""
            return redirect(f"http://{domain}{suffix}/?ready={took}")
    if form.errors:
        status = 400
    return render(
        request,
        "notes/signup.html",
        {"form": form, "tenants": tenant_links(request), "schema": request.schema},  # type: ignore[attr-defined]
        status=status,
    )
