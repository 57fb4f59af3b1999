"""`GET /v1/models/{name}/drift`: a model's monitoring windows (goldmine.monitoring), newest last.

Scoped like every model route: a key sees its tenant's models (an admin key: every tenant's); another tenant's
model is a 404. The figures are counts, shares and test results; no window keeps a text.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from goldmine.monitoring.report import windows
from goldmine.serving.deps import CurrentKey, ServicesDep
from goldmine.serving.errors import error_responses

router = APIRouter(prefix="/v1/models", tags=["monitoring"])


class DriftOut(BaseModel):
    model: str
    alarm_p_value: float = Field(description="A window whose MMD p-value is below this raised the drift alarm.")
    windows: list[dict[str, Any]] = Field(description="Per closed window, oldest first: version, started_at, "
                                          "ended_at, texts, label_counts, out_of_scope_rate, mean_confidence, "
                                          "confidence_histogram, median_words, and when the version has a drift "
                                          "reference mmd2, mmd_p_value, length, oov_rate, oov_rate_training, "
                                          "label_js_divergence, alarm.")


@router.get("/{name}/drift", response_model=DriftOut, responses=error_responses(401, 404, 422))
async def get_drift(
    name: str, key: CurrentKey, services: ServicesDep,
    version: Annotated[str | None, Query(max_length=64, description="Only this version id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="The last this many windows.")] = 100,
) -> DriftOut:
    """Each closed monitoring window of the model: what it was asked and answered, and the drift tests."""
    tenant = None if "admin" in key.scopes else key.tenant
    rows = await asyncio.to_thread(windows, services.db, name, tenant, version, limit)
    return DriftOut(model=name, alarm_p_value=services.settings.drift.alarm_p_value,
                    windows=[row.to_dict() for row in rows])
