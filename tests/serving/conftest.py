"""Serving fixtures: settings on a temporary SQLite file (or a real PostgreSQL), a migrated database, tiny
registered models, keys, and real redis-server / PostgreSQL processes.

The servers start from Debian's binaries on loopback and a free port. When a binary is missing the tests that
need it are skipped, unless GOLDMINE_REQUIRE_SERVICES=1 (CI, after installing redis-server and postgresql),
where a missing binary is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from goldmine.serving.auth import create_key
from goldmine.serving.db import open_database
from goldmine.serving.registry import register
from goldmine.serving.settings import load_settings

POSTGRES_BIN = Path("/usr/lib/postgresql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(what: str) -> None:
    if os.environ.get("GOLDMINE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (GOLDMINE_REQUIRE_SERVICES=1) but not installed")
    pytest.skip(f"{what} not installed (apt-get install {what})")


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


def start_redis(directory: Path) -> tuple[str, subprocess.Popen]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return f"redis://127.0.0.1:{port}/0", process


def _pg_bin(name: str) -> str | None:
    versions = sorted(POSTGRES_BIN.glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for directory in reversed(versions):
        if (directory / name).is_file():
            return str(directory / name)
    return shutil.which(name)


def start_postgres() -> tuple[str, subprocess.Popen, Path]:
    """A throwaway cluster (trust auth, loopback only) in a new temporary directory, with database `goldmine`.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user, in a directory it owns
    outside pytest's (root-only) temporary tree. Returns (url, process, directory to remove afterwards).
    """
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        missing("postgresql")
    directory = Path(tempfile.mkdtemp(prefix="goldmine-pg-"))
    user = {}
    if os.geteuid() == 0:
        info = pwd.getpwnam("postgres")
        os.chown(directory, info.pw_uid, info.pw_gid)
        user = {"user": info.pw_uid, "group": info.pw_gid, "extra_groups": []}
    data = directory / "data"
    subprocess.run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=directory, **user)
    port = free_port()
    process = subprocess.Popen([postgres, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory, **user)
    wait_for_port(port, process)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 30
    while True:
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("CREATE DATABASE goldmine")
            break
        except sqlalchemy.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    engine.dispose()
    return f"{url}/goldmine", process, directory


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


STARTUP_SECONDS = 300  # a deadline, not a timing: a loaded 2-core machine may take minutes to import and load


class Server:
    """`goldmine serve` as a child process; `start()` returns once /readyz says ready."""

    def __init__(self, data_dir: Path, log: Path, **env: str):
        self.data_dir, self.log, self.env = data_dir, log, env
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Server:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDMINE_")}
        env.update(GOLDMINE_DATA_DIR=str(self.data_dir), GOLDMINE_INFERENCE_THREADS="1", HF_HUB_OFFLINE="1",
                   GOLDMINE_BATCHING__MAX_WAIT_MS="5", GOLDMINE_JOBS__LOCAL_WORKER="false")
        env.update(self.env)  # a test may start the local job worker
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "goldmine.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {STARTUP_SECONDS}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_server(tmp_path):
    """`start_server(settings, **env)`: a started `goldmine serve` on the settings' data dir and database."""
    handles: list[Server] = []

    def start(settings, **env: str) -> Server:
        handle = Server(settings.data_dir, tmp_path / f"server{len(handles)}.log", GOLDMINE_DATABASE_URL=settings.url,
                        **env)
        handles.append(handle)
        return handle.start()

    yield start
    for handle in handles:
        handle.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server on loopback for the whole session: its URL."""
    url, process = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop(process)


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster on loopback for the whole session: the URL of its `goldmine` database."""
    url, process, directory = start_postgres()
    yield url
    stop(process)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database on the session's PostgreSQL server, dropped after the test."""
    name = f"gm_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def backend() -> str:
    """The database the `settings` use; `@pytest.mark.parametrize("backend", BACKENDS)` runs a test on both."""
    return "sqlite"


@pytest.fixture
def settings(tmp_path, monkeypatch, backend, request):
    for name in list(os.environ):
        if name.startswith("GOLDMINE_"):
            monkeypatch.delenv(name)
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    return load_settings(data_dir=tmp_path / "serving", database_url=url, preload=False, inference_threads=1)


@pytest.fixture
def db(settings):
    database = open_database(settings)
    yield database
    database.dispose()


@pytest.fixture
def models(db, settings, tiny_run):
    """Tenant `acme` owns `intents` (classification) and `tickets` (NER); tenant `globex` owns `other`."""
    return {
        "intents": register(db, settings.registry_dir, "intents", tiny_run("classification"), "acme"),
        "tickets": register(db, settings.registry_dir, "tickets", tiny_run("ner"), "acme"),
        "other": register(db, settings.registry_dir, "other", tiny_run("classification"), "globex"),
    }


@pytest.fixture
def keys(db):
    """Raw keys by role: acme predict, acme admin, globex predict."""
    return {
        "acme": create_key(db, "acme", "predict,train").key,
        "admin": create_key(db, "acme", "predict,train,admin").key,
        "globex": create_key(db, "globex", "predict,train").key,
        "predict_only": create_key(db, "acme", "predict").key,
        "admin_only": create_key(db, "ops", "admin").key,
    }
