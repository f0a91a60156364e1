"""Migration scripts; one file per revision, applied in order on SQLite and PostgreSQL alike."""
