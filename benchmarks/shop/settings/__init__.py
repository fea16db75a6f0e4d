"""One settings module per configuration, each read from the environment the benchmark sets:
``DATABASE_URL``, ``SHOP_TENANTS`` (N), ``SHOP_CONN_MAX_AGE`` and ``SHOP_LABEL``."""
