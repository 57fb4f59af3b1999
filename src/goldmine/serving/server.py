"""`goldmine serve`: migrate the database, then run the app under uvicorn (one process; scale out by replicas)."""

from __future__ import annotations

from goldmine.serving.settings import ServingSettings


def serve(settings: ServingSettings, host: str | None = None, port: int | None = None,
          log_level: str = "info") -> None:
    """Run until interrupted. Migrations run first, so a bad database URL fails here with a clear message."""
    import uvicorn

    from goldmine.serving.app import create_app
    from goldmine.serving.db import open_database

    open_database(settings).dispose()
    uvicorn.run(create_app(settings), host=host or settings.host, port=settings.port if port is None else port,
                log_level=log_level, proxy_headers=False, server_header=False)
