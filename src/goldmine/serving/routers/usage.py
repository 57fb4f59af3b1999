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
from goldmine.serving.errors import Forbidden, InvalidRequest, error_responses
from goldmine.serving.metering import usage_summary
from goldmine.serving.ratelimit import month_start, next_month_start

router = APIRouter(prefix="/v1/usage", tags=["usage"])

MONTH_PATTERN = r"^[12][0-9]{3}-(0[1-9]|1[0-2])$"  # years 1000-2999: what the schema says is what is accepted


class ModelUsage(BaseModel):
    model: str
    calls: int
    items: int
    input_tokens: int


class AppUsage(BaseModel):
    app: str
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
    by_app: list[AppUsage] = []


def _period(month: str | None, start: date | None, end: date | None) -> tuple[datetime, datetime]:
    """[since, until) for a month or an inclusive day range; a bad combination or value is a 422."""
    try:
        if start or end:
            if month or not (start and end) or end < start:
                raise InvalidRequest("give month=YYYY-MM, or both start and end (end >= start), not both")
            until = (datetime.combine(end + timedelta(days=1), datetime.min.time()) if end < date.max
                     else datetime.max)  # 9999-12-31 is a date like any other
            return datetime.combine(start, datetime.min.time()), until
        since = parse_month(month) if month else month_start(utcnow())
        return since, next_month_start(since)
    except (ConfigError, OverflowError, ValueError) as err:
        raise InvalidRequest(f"invalid period: {err}") from None


@router.get("", response_model=UsageOut, responses=error_responses(401, 403, 422))
async def get_usage(
    key: CurrentKey,
    services: ServicesDep,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN, description=(
        "A calendar month (UTC), YYYY-MM (default: this month). Not together with start/end (422)."))] = None,
    start: Annotated[date | None, Query(description=(
        "First day, instead of month; needs end as well (422 alone or with month)."))] = None,
    end: Annotated[date | None, Query(description=(
        "Last day, included; needs start, and must not be before it (422 otherwise)."))] = None,
    tenant: Annotated[str | None, Query(max_length=64, description="Another tenant (admin scope).")] = None,
) -> UsageOut:
    """Billable usage in a month, or from start to end (both days included), in total, per model and per app. Give
    `month` or both `start` and `end`, never both kinds: OpenAPI cannot express that rule, the server answers 422."""
    tenant = tenant or key.tenant
    if tenant != key.tenant and "admin" not in key.scopes:
        raise Forbidden("reading another tenant's usage needs the admin scope")
    since, until = _period(month, start, end)
    return UsageOut(**await asyncio.to_thread(usage_summary, services.db, tenant, since, until))
