"""Alembic migration environment (run programmatically by :mod:`store.migrate`)."""
