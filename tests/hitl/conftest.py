"""The end-to-end stack of tests/e2e (emulator + real runtime + real database), reused for /hitl."""

from tests.e2e.conftest import db_url, manifests, stack

__all__ = ["db_url", "manifests", "stack"]
