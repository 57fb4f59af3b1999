"""Fuzz the real server from its own OpenAPI schema (schemathesis): no generated input gets a 5xx.

Valid and invalid inputs for every operation, once with generated model names (mostly unknown: 404 paths) and
once aimed at a real model (so predictions, promotions and rollbacks run for real). Derandomized, bounded.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given  # noqa: E402 - after the skip
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = 60


def test_no_server_error_on_generated_input(start_server, settings, models, keys):
    server = start_server(settings)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    failures: list[str] = []
    calls = 0
    runs = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None),
            (GenerationMode.POSITIVE, {"name": "intents"}), (GenerationMode.NEGATIVE, {"name": "intents"})]
    for mode, path_parameters in runs:
        @given(case=schema.as_strategy(mode, path_parameters=path_parameters))
        @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
        def call(case):
            nonlocal calls
            calls += 1
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{response.status_code} {response.text[:300]}\n  {case.as_curl_command()}")

        call()
    assert calls >= EXAMPLES
    assert not failures, "\n".join(failures[:10])
