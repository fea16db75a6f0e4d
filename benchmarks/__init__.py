"""Benchmarks for django-schemata; run the scripts here directly, see README.md."""
