"""`goldmine serve`: migrate the database, then run the app under uvicorn (one process; scale out by replicas)."""

from __future__ import annotations

import logging
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
    uvicorn.run(create_app(settings), host=host or settings.host, port=settings.port if port is None else port,
                log_level=log_level, proxy_headers=False, server_header=False, access_log=False)
