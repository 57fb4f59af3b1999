"""`GET /v1/usage`: calls, texts and tokens of a tenant in a period (own tenant; any tenant with admin scope)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from goldmine.errors import ConfigError
from goldmine.serving.billing import parse_month
from goldmine.serving.db import utcnow
from goldmine.serving.deps import CurrentKey, ServicesDep
from goldmine.serving.errors import Forbidden, InvalidRequest
from goldmine.serving.metering import usage_summary
from goldmine.serving.ratelimit import month_start, next_month_start

router = APIRouter(prefix="/v1/usage", tags=["usage"])


class ModelUsage(BaseModel):
    model: str
    calls: int
    items: int
    input_tokens: int


class UsageOut(BaseModel):
    tenant: str
    start: str
    end: str
    calls: int
    items: int
    input_tokens: int
    by_model: list[ModelUsage]


def _period(month: str | None, start: date | None, end: date | None) -> tuple[datetime, datetime]:
    """[since, until) for a month or an inclusive day range; a bad combination or value is a 422."""
    try:
        if start or end:
            if month or not (start and end) or end < start:
                raise InvalidRequest("give month=YYYY-MM, or both start and end (end >= start)")
            return (datetime.combine(start, datetime.min.time()),
                    datetime.combine(end + timedelta(days=1), datetime.min.time()))
        since = parse_month(month) if month else month_start(utcnow())
        return since, next_month_start(since)
    except (ConfigError, OverflowError, ValueError) as err:
        raise InvalidRequest(f"invalid period: {err}") from None


@router.get("", response_model=UsageOut, responses={401: {}, 403: {}, 422: {}})
async def get_usage(
    key: CurrentKey,
    services: ServicesDep,
    month: Annotated[str | None, Query(description="YYYY-MM (default: this month).")] = None,
    start: Annotated[date | None, Query(description="First day (instead of month).")] = None,
    end: Annotated[date | None, Query(description="Last day, included.")] = None,
    tenant: Annotated[str | None, Query(max_length=64, description="Another tenant (admin scope).")] = None,
) -> UsageOut:
    """Billable usage in [start, end] or in a month, in total and per model."""
    tenant = tenant or key.tenant
    if tenant != key.tenant and "admin" not in key.scopes:
        raise Forbidden("reading another tenant's usage needs the admin scope")
    since, until = _period(month, start, end)
    return UsageOut(**await asyncio.to_thread(usage_summary, services.db, tenant, since, until))
