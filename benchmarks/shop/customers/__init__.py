"""django-tenants' tenant and domain models, for the django-tenants configuration only."""
