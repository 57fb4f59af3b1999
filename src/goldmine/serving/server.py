"""`goldmine serve`: migrate the database, then run the app under uvicorn (one process; scale out by replicas)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from goldmine.serving.settings import ServingSettings


def _request_log_to_stderr() -> None:
    """Request logs as plain JSON lines on stderr (one per request, never wrapped), for log shippers."""
    logger = logging.getLogger("goldmine.serving.requests")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(settings: ServingSettings, host: str | None = None, port: int | None = None,
          log_level: str = "info") -> None:
    """Run until interrupted. Migrations run first, so a bad database URL fails here with a clear message.

    uvicorn's own access log is off: goldmine writes one richer JSON line per request itself (request id, tenant,
    model, latency). The event loop and HTTP parser are uvloop and httptools (uvicorn picks them when installed,
    and `uvicorn[standard]` installs them).
    """
    import uvicorn

    from goldmine.serving.app import create_app
    from goldmine.serving.db import open_database

    open_database(settings).dispose()
    _request_log_to_stderr()
    worker = start_local_worker(settings) if settings.jobs.local_worker else None
    try:
        uvicorn.run(create_app(settings), host=host or settings.host, port=settings.port if port is None else port,
                    log_level=log_level, proxy_headers=False, server_header=False, access_log=False)
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()


def start_local_worker(settings: ServingSettings) -> subprocess.Popen:
    """One `goldmine worker` process beside the API (jobs never train in the API process), on the same settings,
    which are written to an owner-only YAML file the worker reads (they may hold database credentials)."""
    import yaml

    from goldmine.serving.private import private_dir, private_file

    folder = private_dir(settings.data_dir)
    path = private_file(folder / "worker-settings.yaml")
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDMINE_")}
    return subprocess.Popen([sys.executable, "-m", "goldmine.cli", "worker", "--config", str(path), "--parent-pid",
                             str(os.getpid())], env=env, preexec_fn=_terminate_with_parent)


def _terminate_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM when the parent dies (even by SIGKILL), so a local worker never
    outlives its server; the worker then hands its job back to the queue. Elsewhere `--parent-pid` polls."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
