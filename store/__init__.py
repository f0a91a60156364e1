"""Persistence: schema, migrations, repositories, the audit chain and the outbox."""
