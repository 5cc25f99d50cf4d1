"""Alembic environment of the case store, driven programmatically by :mod:`casebook.index.case_store.migrate`.

The caller passes an open SQLAlchemy connection in ``config.attributes["connection"]``; when it
is absent (a developer running the ``alembic`` command with ``alembic.ini``) an engine is built
from ``sqlalchemy.url``. ``render_as_batch`` lets later migrations alter SQLite tables.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from casebook.index.case_store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
