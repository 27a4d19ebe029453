"""Alembic environment: run programmatically by controller.store.migrate().

The caller hands over an open synchronous connection (from the async engine's
`run_sync`) in `config.attributes["connection"]`, so migrations run on the same
engine, pragmas and driver as the application. Offline SQL generation is not
supported.
"""
from __future__ import annotations

from alembic import context

from controller.store import (
    history,  # noqa: F401  (its table, declared there, in the same metadata)
    selfchecks,  # noqa: F401  (the same)
)
from controller.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `vks-controller migrate --db URL` "
                       "(controller.store.migrate), not the alembic command line")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
