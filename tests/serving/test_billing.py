"""Invoices from usage records: exact integer amounts, the free tier, CSV/JSON, reconciliation with records."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime

import pytest

from goldmine.errors import ConfigError
from goldmine.serving.billing import invoice, token_amount
from goldmine.serving.db import Tenant, UsageRecord, utcnow
from goldmine.serving.errors import NotFound
from goldmine.serving.metering import Meter, Usage
from goldmine.serving.settings import PricePlan


def add(db, tenant, model, items, tokens, when, n=1, start=0):
    with db.session() as s:
        if s.get(Tenant, tenant) is None:
            s.add(Tenant(id=tenant, plan="default", created_at=when))
        for i in range(n):
            s.add(UsageRecord(request_id=f"{tenant}-{model}-{when:%Y%m%d%H%M}-{start + i}", tenant_id=tenant,
                              key_id="k1", model=model, version="v1", items=items, input_tokens=tokens, status=200,
                              latency_ms=1.0, created_at=when))


@pytest.fixture
def priced(settings):
    settings.plans["default"] = PricePlan(per_call_minor=2, per_1k_tokens_minor=15, free_calls=3, free_tokens=1000)
    return settings


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_invoice_lines_free_tier_and_month_bounds(db, priced):
    add(db, "acme", "b-model", 1, 300, datetime(2026, 11, 5), n=4)  # 4 calls, 1200 tokens
    add(db, "acme", "a-model", 2, 100, datetime(2026, 11, 30, 23, 59), n=2)  # 2 calls, 200 tokens
    add(db, "acme", "a-model", 2, 999, datetime(2026, 12, 1), n=5)  # next month
    add(db, "acme", "a-model", 2, 999, datetime(2026, 10, 31, 23, 59), n=5)  # last month
    add(db, "globex", "a-model", 2, 999, datetime(2026, 11, 5), n=5)  # another tenant
    inv = invoice(db, priced, "acme", "2026-11")
    a, b = inv.lines
    # a-model first: takes 2 free calls and 200 free tokens -> 0
    assert (a.model, a.calls, a.items, a.input_tokens, a.free_calls, a.free_tokens, a.amount_minor) == (
        "a-model", 2, 4, 200, 2, 200, 0)
    # b-model: 1 free call left, 800 free tokens left -> 3 calls * 2 + round(400 * 15 / 1000 = 6.0) = 12
    assert (b.calls, b.free_calls, b.free_tokens, b.amount_minor) == (4, 1, 800, 12)
    assert (inv.total_minor, inv.calls, inv.input_tokens, inv.currency) == (12, 6, 1400, "EUR")
    assert inv.start == "2026-11-01T00:00:00Z" and inv.end == "2026-12-01T00:00:00Z"


def test_rounding_is_half_up_on_integers():
    assert token_amount(100, 15) == 2  # 1.5 -> 2
    assert token_amount(99, 15) == 1  # 1.485 -> 1
    assert token_amount(0, 15) == 0
    assert isinstance(token_amount(10**12, 7), int)


def test_csv_and_json(db, priced):
    add(db, "acme", "m", 1, 2000, datetime(2026, 11, 5), n=5)
    inv = invoice(db, priced, "acme", "2026-11")
    rows = list(csv.DictReader(io.StringIO(inv.to_csv())))
    assert [r["model"] for r in rows] == ["m", "TOTAL"]
    assert rows[0]["amount_minor"] == str(2 * 2 + token_amount(9000, 15)) == rows[1]["amount_minor"]
    data = inv.to_dict()
    assert data["lines"][0]["calls"] == 5 and data["total_minor"] == int(rows[1]["amount_minor"])


def test_errors(db, priced):
    with pytest.raises(ConfigError, match="month must look like 2026-11"):
        invoice(db, priced, "acme", "2026-13")
    with pytest.raises(NotFound, match="no tenant named 'nobody'"):
        invoice(db, priced, "nobody", "2026-11")
    add(db, "acme", "m", 1, 1, datetime(2026, 11, 5))
    with db.session() as s:
        s.get(Tenant, "acme").plan = "gold"
    with pytest.raises(ConfigError, match="plan 'gold', which the settings do not define"):
        invoice(db, priced, "acme", "2026-11")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_meter_records_reconcile_with_the_invoice(db, priced):
    meter = Meter(db)

    async def main():
        await asyncio.gather(*(meter.record(Usage(f"r{i}", "acme", "k1", "m", "v1", 2, 40 + i, 3.0))
                               for i in range(20)))

    with db.session() as s:
        s.add(Tenant(id="acme", plan="default", created_at=datetime(2026, 1, 1)))
    asyncio.run(main())
    month = utcnow().strftime("%Y-%m")
    inv = invoice(db, priced, "acme", month)
    assert inv.calls == 20 and inv.input_tokens == sum(40 + i for i in range(20))
    assert meter.texts_used("k1", datetime(2000, 1, 1)) == 40
