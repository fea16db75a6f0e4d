"""Tenant-bound users for projects that share ``auth`` between tenants.

Add ``"schemata.auth"`` to ``INSTALLED_APPS`` (a tenant app: each schema holds its own
memberships) and ``"schemata.auth.backends.MembershipBackend"`` to ``AUTHENTICATION_BACKENDS``.
A shared user then logs in, and stays logged in, only on the tenants that grant them a
``Membership``, with that tenant's ``is_staff`` and ``is_superuser``.
"""
