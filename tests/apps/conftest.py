"""App test fixtures: the serving fixtures (settings on a temporary SQLite file, a migrated database, keys, a real
server process) shared from tests/serving/conftest.py, since apps are served by the same server."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("goldmine_tests_serving_fixtures",
                                               Path(__file__).parents[1] / "serving" / "conftest.py")
serving_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving_fixtures)

backend = serving_fixtures.backend
settings = serving_fixtures.settings
db = serving_fixtures.db
keys = serving_fixtures.keys
models = serving_fixtures.models
start_server = serving_fixtures.start_server
postgres_server = serving_fixtures.postgres_server
postgres_url = serving_fixtures.postgres_url


@pytest.fixture
def free_port():
    """`free_port()`: a port nothing listens on (now)."""
    return serving_fixtures.free_port


# ---- `echo`: the smallest app, for the scaffolding's own tests (registered only while a test asks for it) -------

from fastapi import APIRouter, Request  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from goldmine.apps.base import AppConfig, AppSpec, ModelRef  # noqa: E402
from goldmine.apps.http import Billed, app_model, check_texts, config_for, metered_call  # noqa: E402
from goldmine.serving.deps import PredictKey, ServicesDep  # noqa: E402 - module level: FastAPI reads the annotations


class EchoModels(BaseModel):
    classifier: ModelRef
    spare: ModelRef | None = None


class EchoConfig(AppConfig):
    models: EchoModels = Field(description="The models it runs.")
    greeting: str = Field("hello", description="Said back.")


class ClassifyRequest(BaseModel):
    texts: list[str]


def echo_router() -> APIRouter:
    router = APIRouter(prefix="/v1/apps/echo")

    @router.post("/classify")
    async def classify(body: ClassifyRequest, request: Request, key: PredictKey, services: ServicesDep):
        config = config_for(services, "echo", key.tenant)
        check_texts(body.texts, "texts[{}]", services.settings.limits)

        async def run():
            loaded = await app_model(services, config, "models.classifier")
            results = await loaded.batcher.submit(body.texts)
            return ({"greeting": config.greeting, "labels": [p["label"] for p, _ in results]},
                    Billed(loaded.name, loaded.version, sum(n for _, n in results)))

        return await metered_call(request, key, services, "echo", len(body.texts), run)

    @router.get("/greeting")
    async def greeting(request: Request, key: PredictKey, services: ServicesDep):
        config = config_for(services, "echo", key.tenant)

        async def run():
            return {"greeting": config.greeting}, Billed()

        return await metered_call(request, key, services, "echo", 0, run)

    return router


@pytest.fixture
def echo_app(monkeypatch):
    """Registers the `echo` app for one test (its config class, router and an empty Typer group)."""
    import typer

    from goldmine.apps import APPS

    spec = AppSpec("echo", "Says hello and classifies.", EchoConfig, typer.Typer(), echo_router())
    monkeypatch.setitem(APPS._items, "echo", spec)
    return spec


@pytest.fixture
def echo_config(tmp_path):
    """`echo_config(**fields)`: an echo app config file for tenant acme naming `intents` (production)."""
    import yaml

    def write(name: str = "echo.yaml", **fields) -> Path:
        config = {"app": "echo", "tenant": "acme", "models": {"classifier": {"name": "intents"}}, **fields}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write
