"""Fuzz the real server from its own OpenAPI schema (schemathesis): the schema says what the server does.

Every schemathesis check that judges one response runs on every generated call: no 5xx; every status, header,
content type and body is one the schema declares (errors as `ErrorBody`); input the schema allows is accepted,
input it forbids is refused. Valid and invalid inputs for every operation, once with generated model names
(mostly unknown: 404 paths) and once aimed at a real model (so predictions, promotions and rollbacks run for
real). Derandomized, EXAMPLES per run: a few seconds of calls.

What the schema cannot say is said here, and checked instead of "valid input is accepted":
- the usage period is `month`, or `start` and `end` together (end not before start): anything else is a 422;
- `texts_b` is for pair models only (and one per text): these models read single texts, so it is a 422;
- `labels` is for zero-shot models only: these models were trained on their own labels, so it is a 422.
A server refuses over-limit input with 413 (the schema states the limits as maxItems/maxLength, and 413 is the
documented answer), and a body over `max_body_bytes` (which OpenAPI cannot state) with 413 too.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given  # noqa: E402 - after the skip
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402
from schemathesis.core.failures import Failure, FailureGroup  # noqa: E402

EXAMPLES = 60
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]  # no 5xx either
RESPONSE_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
                   "positive_data_acceptance", "ignored_auth")


def unstated_rule(case) -> str | None:
    """The rule the schema cannot state that this schema-valid case breaks, or None."""
    if case.operation.path == "/v1/usage":
        query = {k: v for k, v in (case.query or {}).items() if v is not None}
        month, start, end = query.get("month"), query.get("start"), query.get("end")
        if month is not None and (start is not None or end is not None):
            return "month together with start/end"
        if (start is None) != (end is None):
            return "start without end, or end without start"
        if start is not None and str(end) < str(start):
            return "end before start"
    if case.operation.path == "/v1/datasets" and case.method.upper() == "POST":
        return "an upload must be a valid dataset file (goldmine data check) with a plain, supported name"
    body = case.body if isinstance(case.body, dict) else {}
    if case.operation.path.endswith("/predict") and body.get("texts_b") is not None:
        return "texts_b for a model that reads single texts"
    if case.operation.path.endswith("/predict") and body.get("labels") is not None:
        return "labels for a model that is not zero-shot"
    return None


def test_the_schema_says_what_the_server_does(start_server, settings, models, keys):
    server = start_server(settings)
    config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}})
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
    load_all_checks()
    checks = {check.__name__: check for check in CHECKS.get_all()}
    accepted = checks["positive_data_acceptance"]
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    failures: list[str] = []
    calls, statuses = 0, set()
    def judge(case, positive: bool) -> None:
        nonlocal calls
        calls += 1
        response = case.call(base_url=server.url, headers=headers, timeout=30)
        statuses.add(response.status_code)
        excluded = []
        rule = unstated_rule(case) if positive else None
        if rule is not None:
            excluded.append(accepted)
            allowed = (422,) if case.operation.path == "/v1/usage" else (404, 409, 413, 415, 422)
            if response.status_code not in allowed:
                failures.append(f"{rule}: {response.status_code}, not {allowed}\n  {case.as_curl_command()}")
        error = response.json().get("error", {}) if response.status_code == 413 else {}
        if str(error.get("message", "")).startswith("request body over"):
            excluded.append(accepted)  # the body-size limit, which OpenAPI has no way to state
        try:
            case.validate_response(response, checks=[checks[name] for name in RESPONSE_CHECKS],
                                   excluded_checks=excluded, headers=headers,
                                   transport_kwargs={"base_url": server.url})
        except (Failure, FailureGroup) as err:  # the report says what failed and how to call it again
            failures.append(str(err)[:3000])

    def run(mode: GenerationMode, path_parameters: dict | None) -> None:
        @given(case=schema.as_strategy(mode, path_parameters=path_parameters))
        @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
        def call(case):
            judge(case, positive=mode is GenerationMode.POSITIVE)

        call()

    runs = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None),
            (GenerationMode.POSITIVE, {"name": "intents"}), (GenerationMode.NEGATIVE, {"name": "intents"})]
    for mode, path_parameters in runs:
        run(mode, path_parameters)
    assert calls >= len(runs) * EXAMPLES // 2
    assert {200, 404, 422} <= statuses  # the runs reached real answers, not only refusals
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:5])
