"""Alembic environment: always handed a live connection by imagegate.db.migrate."""

from __future__ import annotations

from alembic import context

from imagegate.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `imagegate db upgrade`, not the alembic CLI")

context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
