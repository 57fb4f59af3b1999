"""The database: migrations match the ORM, SQLite runs in WAL mode and is owner-only, naive-UTC timestamps."""

from __future__ import annotations

import os
import stat

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import goldmine.apps.monitor.store  # noqa: F401 - the monitor's tables are part of the serving schema
import goldmine.apps.support.store  # noqa: F401 - the assistant's tables are part of the serving schema
from goldmine.serving.db import MIGRATIONS, Base, Tenant, migrate, open_database, utcnow
from goldmine.serving.settings import load_settings


def _head() -> str:
    """The newest revision, read from the migration files (one head: a second one would make this fail)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


HEAD = _head()


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
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD


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
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD
    engine.dispose()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    """The usual umask (files world-readable by default): the modes below must not come from the umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_sqlite_files_are_owner_only(tmp_path, umask_022):
    settings = load_settings(data_dir=tmp_path / "runs" / "serving")
    database = open_database(settings)
    try:
        with database.session() as session:  # a write: the -wal and -shm files exist while the engine is open
            session.add(Tenant(id="acme", plan="default", created_at=utcnow()))
        path = settings.data_dir / "goldmine.db"
        files = [path, path.with_name("goldmine.db-wal"), path.with_name("goldmine.db-shm"),
                 path.with_name("goldmine.db.migrate.lock")]
        assert [mode(f) for f in files] == [0o600] * 4
        assert mode(settings.data_dir) == 0o700
        assert mode(settings.data_dir.parent) == 0o755  # a parent that had to be made is not goldmine's to lock
    finally:
        database.dispose()


def test_an_existing_world_readable_database_is_made_private_on_open(settings, umask_022):
    open_database(settings).dispose()
    path = settings.data_dir / "goldmine.db"
    path.chmod(0o644)
    open_database(settings).dispose()
    assert mode(path) == 0o600


def test_upgrade_from_0001_keeps_stored_replies(settings):
    """A database made by the first schema (whole replies stored) upgrades in place and still replays them."""
    import json

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from goldmine.serving.db import MIGRATIONS, make_engine
    from goldmine.serving.metering import Meter

    engine = make_engine(settings.url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    body = {"request_id": "r1", "model": "m", "version": "v1", "predictions": [{"label": "a"}]}
    row = dict(request_id="r1", tenant_id="acme", key_id="k1", model="m", version="v1", items=1, input_tokens=3,
            status=200, latency_ms=1.0, created_at=utcnow(), idempotency_key="order-1", request_hash="h",
            response_json=json.dumps(body))
    first_schema = sa.table("usage_records", *(sa.column(name) for name in row))  # the 0001 columns only
    with engine.begin() as connection:
        connection.execute(first_schema.insert(), [row])
    migrate(engine)
    database = open_database(settings)
    try:
        assert Meter(database).find("k1", "order-1", "h").body == body
    finally:
        engine.dispose()
        database.dispose()


def test_0009_downgrades_to_0008_and_upgrades_again(settings):
    """The feedback migration is reversible on a database in use: down to 0008 its tables and the tenant and job
    columns go, and up again they come back, with the tenant and every row that refers to it kept (keep_texts
    off). On SQLite, dropping a column rebuilds the table: tenants is referenced by keys, models and jobs."""
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import ApiKey, Job

    database = open_database(settings)
    key = create_key(database, "acme", "predict")
    with database.session() as session:
        session.add(Job(id="job_1", tenant_id="acme", model_name="m", config_json="{}", datasets_json="{}"))
    try:
        for target in ("0008", "0009"):
            migrate(database.engine, target, downgrade=target == "0008")
            tables = set(inspect(database.engine).get_table_names())
            columns = {c["name"] for c in inspect(database.engine).get_columns("tenants")}
            job_columns = {c["name"] for c in inspect(database.engine).get_columns("jobs")}
            present = {"answered_items", "feedback", "eval_sets", "gate_reports"} <= tables
            assert present == ("keep_texts" in columns) == ("kind" in job_columns) == (target == "0009")
            assert "drift_windows" in tables  # 0008's own table is untouched
        migrate(database.engine)  # to head (a no-op when 0009 is the newest)
        with database.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # enforced again
        with database.session() as session:
            assert session.get(Tenant, "acme").keep_texts is False
            assert session.get(ApiKey, key.info.id).tenant_id == "acme"
            assert session.get(Job, "job_1").kind == "train"
    finally:
        database.dispose()


def test_0010_gives_keys_that_predict_the_train_scope_they_had(settings):
    """Before 0010 a predict key could upload datasets and run jobs: the upgrade adds `train` to such keys (and
    only to them), the downgrade takes it away again."""
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import ApiKey

    database = open_database(settings)
    try:
        migrate(database.engine, "0009", downgrade=True)
        keys = {scopes: create_key(database, "acme", scopes).info.id for scopes in ("predict", "admin")}
        migrate(database.engine)
        with database.session() as session:
            assert session.get(ApiKey, keys["predict"]).scopes == "predict,train"
            assert session.get(ApiKey, keys["admin"]).scopes == "admin"
        migrate(database.engine, "0009", downgrade=True)
        with database.session() as session:
            assert session.get(ApiKey, keys["predict"]).scopes == "predict"
    finally:
        database.dispose()
