"""The end-to-end stack (real service, emulator, SQLite and PostgreSQL) for operations tests."""

from tests.e2e.conftest import *  # noqa: F403  (re-exports the e2e fixtures: db_url, manifests, stack, ...)
