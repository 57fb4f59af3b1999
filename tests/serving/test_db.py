"""The database: migrations match the ORM, SQLite runs in WAL mode, naive-UTC timestamps."""

from __future__ import annotations

import pytest
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


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_orm_on_both_backends(db, backend):
    migrate(db.engine)  # twice: a no-op
    with db.engine.connect() as connection:
        assert connection.dialect.name == backend.replace("postgres", "postgresql")
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


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


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_migrations_from_several_processes(settings, backend):
    """Replicas starting at the same moment: every one migrates (or waits and finds nothing to do), none fails."""
    import subprocess
    import sys

    code = ("from goldmine.serving.db import make_engine, migrate; import sys; "
            "e = make_engine(sys.argv[1]); migrate(e); e.dispose()")
    processes = [subprocess.Popen([sys.executable, "-c", code, settings.url], stderr=subprocess.PIPE)
                 for _ in range(3)]
    for p in processes:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    from goldmine.serving.db import make_engine

    engine = make_engine(settings.url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"
    engine.dispose()
