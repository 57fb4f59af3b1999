"""Alembic environment: runs on the connection `goldmine.serving.db.migrate` passes, or on a URL (alembic CLI)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import goldmine.apps.monitor.store  # noqa: F401 - apps' tables live in the serving database too
import goldmine.apps.support.store  # noqa: F401 - apps' tables live in the serving database too
from goldmine.serving.db import Base

config = context.config
target_metadata = Base.metadata


def run(connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=is_sqlite)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:  # the plain alembic CLI: `alembic -x url=sqlite:///runs/serving/goldmine.db upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).begin() as conn:
        run(conn)
