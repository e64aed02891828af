"""Alembic environment: run against the connection quotameter hands over."""

from alembic import context

from quotameter.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the `alembic` command line on its own
    from quotameter.store.engine import make_engine

    connection = make_engine(context.config.get_main_option("sqlalchemy.url")).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
