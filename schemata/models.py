"""No models: this module makes ``migrate`` send ``post_migrate`` for the app (see ``apps.py``)."""
