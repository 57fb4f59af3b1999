"""/docs works offline: the page and every file it loads come from this server, none from a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from goldmine.serving.app import create_app

EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


def test_docs_page_loads_only_local_files(settings):
    with TestClient(create_app(settings)) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
        urls = [a or b for a, b in urls]
        assert len(urls) == 4 and not re.search(r"https?://", page.text)  # css, favicon, js, openapi.json
        assert all(u.startswith("/") and not u.startswith("//") for u in urls)
        for url in urls:
            r = client.get(url)
            kind = EXPECTED_TYPES[url[url.rindex("."):]]
            assert r.status_code == 200 and kind in r.headers["content-type"], (url, r.headers["content-type"])
            assert len(r.content) > 1000 or url.endswith(".png"), url
        assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
        assert client.get("/redoc").status_code == 404  # no other page that would load a CDN


def test_docs_follow_the_root_path_behind_a_proxy(settings):
    with TestClient(create_app(settings), root_path="/api") as client:
        page = client.get("/docs").text
    assert 'src="/api/docs/assets/swagger-ui-bundle.js"' in page and "url: '/api/openapi.json'" in page
