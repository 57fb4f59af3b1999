"""The database: migrations match the ORM, SQLite runs in WAL mode, naive-UTC timestamps."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from goldmine.serving.db import Base, Tenant, migrate, utcnow


def test_migrations_create_the_orm_schema(db):
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    tables = set(inspect(db.engine).get_table_names())
    assert {"tenants", "api_keys", "usage_records", "models", "model_versions", "model_aliases",
            "alias_history", "alembic_version"} <= tables


def test_migrate_twice_is_a_no_op(db):
    migrate(db.engine)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"


def test_session_commits_or_rolls_back(db):
    with db.session() as session:
        session.add(Tenant(id="acme", plan="default", created_at=utcnow()))
    try:
        with db.session() as session:
            session.add(Tenant(id="tmp", plan="default", created_at=utcnow()))
            raise RuntimeError
    except RuntimeError:
        pass
    with db.session() as session:
        assert [t.id for t in session.query(Tenant)] == ["acme"]
    assert db.ping()
