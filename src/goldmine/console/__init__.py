"""The web console at /console: a tenant's datasets, jobs, models, playground, keys, usage and monitoring in a
browser, signed in with an API key (and an admin view for admin-scope keys).

Server-rendered: Jinja2 templates, a hand-written stylesheet and a few lines of vanilla JavaScript (the upload and
the live job view), all shipped in the package, so nothing is built or downloaded at install time. The console sits
on top of `goldmine.serving` and calls its functions; nothing in serving imports it except the one mount line.
"""

from __future__ import annotations

from fastapi import FastAPI

from goldmine.console.routes import UPLOAD_PATH, create_console
from goldmine.console.session import PATH
from goldmine.serving.settings import ServingSettings

__all__ = ["PATH", "UPLOAD_PATH", "mount"]


def mount(app: FastAPI, settings: ServingSettings) -> None:
    """Serve the console under /console of the serving `app` (unless `console.enabled` is false)."""
    if settings.console.enabled:
        app.mount(PATH, create_console(app, settings), name="console")
