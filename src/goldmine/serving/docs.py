"""`/docs`: Swagger UI served by this server, not from a CDN, so the page works offline and behind firewalls.

The Swagger UI files come from the `swagger-ui-bundle-v2` package (the dist of Swagger UI 5, which reads the
OpenAPI 3.1 that FastAPI writes) and are mounted under `/docs/assets`; the page is FastAPI's own
`get_swagger_ui_html` pointed at them (FastAPI's recipe for self-hosted docs assets). Its URLs start with the
app's `root_path`, so the page also works behind a proxy that mounts the API under a prefix.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def install_docs(app: FastAPI, path: str = "/docs") -> None:
    """Serve Swagger UI at `path` and its files under `ASSETS` (create the app with `docs_url=None`)."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get(path, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
        )
