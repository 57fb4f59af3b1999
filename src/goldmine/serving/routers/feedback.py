"""`/v1/models/{name}/feedback` and `/v1/models/{name}/gate`: corrections of answered calls, and the regression gate's
latest report. Every route is scoped by the key's tenant: another tenant's model or request id reads 404."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from goldmine.serving import autorollback, feedback
from goldmine.serving.deps import PredictKey, Services, ServicesDep
from goldmine.serving.errors import error_responses
from goldmine.serving.gate import latest_report

router = APIRouter(prefix="/v1/models", tags=["feedback"])


class FeedbackOut(BaseModel):
    id: int
    model: str
    version: str
    request_id: str
    position: int
    predicted: str
    label: str
    correct: bool
    text_kept: bool
    created_at: str
    rolled_back: dict[str, Any] | None = None


class FeedbackSummary(BaseModel):
    model: str
    versions: list[dict[str, Any]]


class GateOut(BaseModel):
    model: str
    candidate: str
    live: str
    passed: bool
    created_at: str
    report: dict[str, Any]


@router.post("/{name}/feedback", response_model=FeedbackOut, status_code=201,
             responses=error_responses(401, 403, 404, 422))
async def give_feedback(name: str, body: feedback.FeedbackIn, key: PredictKey, services: ServicesDep) -> FeedbackOut:
    """The right label (or `correct: true`) for one answered item, by the call's request_id and the item's
    position. Unknown or foreign request ids are 404; a label the model does not have is 422. When the live
    version's accuracy from feedback has fallen below the previous version's (settings.feedback), the alias is
    rolled back at once and `rolled_back` says so."""
    info = await asyncio.to_thread(feedback.submit, services.db, key.tenant, name, body)
    rolled = await _watch(services, name)
    return FeedbackOut(**info.to_dict(), rolled_back=rolled.__dict__ if rolled else None)


async def _watch(services: Services, name: str) -> autorollback.Rollback | None:
    rolled = await asyncio.to_thread(autorollback.check, services.db, services.settings, name,
                                     services.settings.default_alias)
    if rolled is not None:
        services.metrics.feedback_rollbacks.labels(name).inc()
        services.versions.invalidate()  # this server's calls follow at once
    return rolled


@router.get("/{name}/feedback", response_model=FeedbackSummary, responses=error_responses(401, 403, 404))
async def feedback_summary(name: str, key: PredictKey, services: ServicesDep) -> FeedbackSummary:
    """Per version that answered: feedback count, corrections, texts kept, accuracy from feedback."""
    versions = await asyncio.to_thread(feedback.summary, services.db, key.tenant, name)
    return FeedbackSummary(model=name, versions=versions)


@router.get("/{name}/gate", response_model=GateOut, responses=error_responses(401, 403, 404))
async def gate_report(name: str, key: PredictKey, services: ServicesDep) -> GateOut:
    """The regression gate's latest report for this model: every check with its numbers, and the verdict."""
    return GateOut(**(await asyncio.to_thread(latest_report, services.db, key.tenant, name)))
