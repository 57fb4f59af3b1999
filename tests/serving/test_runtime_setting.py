"""`runtime` in the serving settings: auto serves the fastest current export, a named runtime is enforced."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from pydantic import ValidationError

from goldmine.errors import ModelError
from goldmine.serving.metrics import Metrics
from goldmine.serving.runtime import ModelPool
from goldmine.serving.settings import ServingSettings


@pytest.fixture(scope="module")
def exported_run(tiny_run, tmp_path_factory):
    """A copy of the tiny classification run with an ONNX fp32 export (no int8)."""
    from goldmine.export import export_model

    run = tmp_path_factory.mktemp("served") / "run"
    shutil.copytree(tiny_run("classification"), run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    export_model(run, force=True, threads=1, sample_size=8)
    return run


def load(settings: ServingSettings, path) -> str:
    async def go():
        pool = ModelPool(settings, Metrics())
        loaded = await pool.get("intents", "v1", str(path))
        return loaded.model.runtime

    return asyncio.run(go())


@pytest.mark.parametrize(("runtime", "expected"), [("auto", "onnx"), ("torch", "torch"), ("onnx", "onnx")])
def test_the_server_loads_the_runtime_the_settings_name(exported_run, tmp_path, runtime, expected):
    settings = ServingSettings(data_dir=tmp_path, runtime=runtime, inference_threads=1, preload=False)
    assert load(settings, exported_run) == expected


def test_a_runtime_the_version_was_not_exported_for_fails_to_load(exported_run, tmp_path):
    settings = ServingSettings(data_dir=tmp_path, runtime="onnx-int8", inference_threads=1, preload=False)
    with pytest.raises(ModelError, match="has no onnx-int8 export"):
        load(settings, exported_run)


def test_an_unknown_runtime_is_a_settings_error(tmp_path):
    with pytest.raises(ValidationError, match="runtime"):
        ServingSettings(data_dir=tmp_path, runtime="tensorrt")
