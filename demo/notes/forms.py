from __future__ import annotations

from django import forms

from notes.models import Note


class NoteForm(forms.ModelForm):  # type: ignore[type-arg]
    tags = forms.CharField(required=False, max_length=200, help_text="Comma-separated.")

    class Meta:
        model = Note
        fields = ["title", "body", "attachment"]
        widgets = {"body": forms.Textarea(attrs={"rows": 3})}

    def clean_tags(self) -> list[str]:
        names = {name.strip().lower() for name in self.cleaned_data["tags"].split(",")}
        names.discard("")
        for name in sorted(names):
            if len(name) > 30:
                raise forms.ValidationError(f"A tag has at most 30 characters: {name!r}.")
        return sorted(names)
