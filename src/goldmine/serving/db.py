"""The serving database: tenants, API keys, usage records and the model registry, through SQLAlchemy 2.

Any SQLAlchemy URL works (PostgreSQL by setting `database_url`); the default is a SQLite file in WAL mode,
so readers never block the writer; the file and its directory are created owner-only (see `private`).
Timestamps are naive UTC everywhere (SQLite keeps no time zone).
The schema is owned by the Alembic migrations in `migrations/`; `open_database` upgrades to head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from goldmine.serving.private import FILE_MODE, private_dir, private_file
from goldmine.serving.settings import ServingSettings

MIGRATIONS = Path(__file__).with_name("migrations")
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC now: what every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    """A customer. Keys, models and usage belong to one tenant; `plan` names a price plan in the settings."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan: Mapped[str] = mapped_column(String(64), default="default")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    keep_texts: Mapped[bool] = mapped_column(default=False, server_default=text("false"))  # feedback: see below


class ApiKey(Base):
    """An API key `gm_<id>_<secret>`: only the id, a per-key salt and the salted hash of the secret are stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    salt: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(String(200))  # comma-separated, e.g. "predict,admin"
    rate: Mapped[float | None] = mapped_column(Float)  # requests per second; None = the settings' default_rate
    monthly_quota: Mapped[int | None] = mapped_column(Integer)  # texts per calendar month (UTC); None = unlimited
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)  # generation; None = unlimited
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s for s in self.scopes.split(",") if s)


class UsageRecord(Base):
    """One billable call. Written and committed before the response leaves the server."""

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("key_id", "idempotency_key"),
        Index("ix_usage_records_tenant_created", "tenant_id", "created_at"),
        Index("ix_usage_records_replay_created", "created_at", sqlite_where=text("idempotency_key IS NOT NULL"),
              postgresql_where=text("idempotency_key IS NOT NULL")),  # the purge of expired replies
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))  # an app call: the app's main model ("" if it ran none)
    version: Mapped[str] = mapped_column(String(64))
    app: Mapped[str | None] = mapped_column(String(64), default=None)  # a call of an app (goldmine.apps), by name
    items: Mapped[int] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # generated tokens sent
    status: Mapped[int] = mapped_column(Integer, default=200)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)  # sha256 of the request, with a key
    response_json: Mapped[str | None] = mapped_column(Text, default=None)  # replay body, until it expires


class RegisteredModel(Base):
    """A model name (global) and the tenant that owns it; other tenants never see it."""

    __tablename__ = "models"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """An immutable version: `version` is the content hash of the model directory, `path` its registry copy."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(ForeignKey("models.name"))
    version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """Where an alias (production, staging, ...) of a model points now."""

    __tablename__ = "model_aliases"
    model_name: Mapped[str] = mapped_column(ForeignKey("models.name"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasChange(Base):
    """Every promotion of an alias, kept for audit and rollback (a rollback marks the promotion it undoes)."""

    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_model_alias", "model_name", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    previous_version: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rolled_back_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    """An uploaded, validated data file of a tenant. `id` is the sha256 of its bytes: the same file uploaded
    twice is one dataset (per tenant: another tenant's upload of the same bytes is its own row and copy)."""

    __tablename__ = "datasets"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    examples: Mapped[int] = mapped_column(Integer)
    report_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A fine-tuning job: its request, its state on the workers, its progress and the compute it used."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_tenant_status", "tenant_id", "status"),
                      Index("ix_jobs_tenant_finished", "tenant_id", "finished_at"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    model_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="train", server_default="train")  # train | retrain
    config_json: Mapped[str] = mapped_column(Text)  # the validated goldmine training config (dotted overrides)
    datasets_json: Mapped[str] = mapped_column(Text)  # {"train": id, "dev": id?, "test": id?}
    export: Mapped[str | None] = mapped_column(String(16), default=None)  # onnx | onnx-int8: exported, gated
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued running succeeded failed cancelled
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    phase: Mapped[str | None] = mapped_column(String(64), default=None)
    eta_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    dev_metrics_json: Mapped[str | None] = mapped_column(Text, default=None)
    log_json: Mapped[str] = mapped_column(Text, default="[]")  # the last log lines
    cpu_ms: Mapped[int] = mapped_column(Integer, default=0)  # billed CPU time (see goldmine.serving.jobs)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[str | None] = mapped_column(String(64), default=None)  # the registered model version
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AnsweredItem(Base):
    """One item of an answered classification call, what a feedback refers to (see `goldmine.serving.feedback`).
    Written in the transaction of the call's usage record. `text` is the masked text, only when the tenant keeps
    texts; `text_sha256` always (keyed by request and position, so equal texts of two calls do not match)."""

    __tablename__ = "answered_items"
    __table_args__ = (Index("ix_answered_items_created", "created_at"),)  # the retention purge
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))  # the label answered
    score: Mapped[float] = mapped_column(Float)
    text_sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    """A correction (or confirmation) of one answered item: the label it should have had."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("request_id", "position"),  # a later feedback on the same item replaces it
                      Index("ix_feedback_model_version", "model", "version"),
                      Index("ix_feedback_created", "created_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))  # the version that answered
    request_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    predicted: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200))  # the right label
    correct: Mapped[bool] = mapped_column()  # predicted == label
    text: Mapped[str | None] = mapped_column(Text, default=None)  # masked; None: not kept (no retraining on it)
    source: Mapped[str] = mapped_column(String(16), default="api")  # api | console
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalSet(Base):
    """The frozen evaluation set of a model (`goldmine.serving.gate`): fixed once, never trained on."""

    __tablename__ = "eval_sets"
    model_name: Mapped[str] = mapped_column(ForeignKey("models.name"), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))  # the promoted version whose held-out splits it copies
    path: Mapped[str] = mapped_column(Text)  # folder holding eval.jsonl and original.jsonl
    sha256: Mapped[str] = mapped_column(String(64))
    examples: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GateReport(Base):
    """One run of the regression gate: a candidate against the live version, with every check's numbers."""

    __tablename__ = "gate_reports"
    __table_args__ = (Index("ix_gate_reports_model", "model_name", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    candidate: Mapped[str] = mapped_column(String(64))
    live: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column()
    report_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftWindow(Base):
    """One closed monitoring window of a model version (goldmine.monitoring): its figures, never its texts."""

    __tablename__ = "drift_windows"
    __table_args__ = (Index("ix_drift_windows_model_version", "model_name", "version", "ended_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime] = mapped_column(default=utcnow)
    texts: Mapped[int] = mapped_column(Integer)
    alarm: Mapped[bool] = mapped_column(default=False)
    report_json: Mapped[str] = mapped_column(Text)  # goldmine.monitoring.windows.WindowReport


def make_engine(url: str, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine for `url`; SQLite files get WAL, a busy timeout, foreign keys and the chosen fsync level, and are
    owner-only: the file is made 0600 before SQLite opens it (its -wal and -shm take the file's mode)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        path = Path(parsed.database)
        private_dir(path.parent)
        private_file(path)  # an empty file is an empty database to SQLite
        for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if companion.exists():  # left by an earlier version of goldmine, maybe world-readable
                companion.chmod(FILE_MODE)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


MIGRATION_LOCK = 7_317_001  # PostgreSQL advisory lock id: replicas starting together migrate one at a time


def migrate(engine: Engine, revision: str = "head", downgrade: bool = False) -> None:
    """Upgrade the schema to `revision` (the newest by default; a no-op when it is there already), or with
    `downgrade` take it back down to `revision` (operators undoing a release).

    Several processes may start at once (replicas, or the CLI next to a server): on PostgreSQL an advisory lock,
    on a SQLite file an exclusive file lock, lets one migrate while the others wait and then find nothing to do.
    On SQLite, foreign keys are not enforced while the migrations run: a migration that changes a column of a
    table other tables refer to (tenants) rebuilds it (copy, drop, rename), and the drop of a referenced table
    fails under enforcement once rows refer to it. The references are checked when the migrations are done
    (`PRAGMA foreign_key_check`), before the changes commit.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_file_lock(engine), engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # outside a transaction: inside one SQLite ignores the pragma
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
                config.attributes["connection"] = connection
                (command.downgrade if downgrade else command.upgrade)(config, revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"the migration to {revision} left rows whose references are broken: "
                                       f"{broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(private_file(Path(f"{database}.migrate.lock")), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Database:
    """An engine and a session factory over one URL."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block ends without error, rolled back otherwise."""
        with self.sessions() as session, session.begin():
            yield session

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: ServingSettings, upgrade: bool = True) -> Database:
    """The database the settings name, migrated to head unless `upgrade=False`."""
    engine = make_engine(settings.url, settings.sqlite_synchronous)
    if upgrade:
        migrate(engine)
    return Database(engine)
