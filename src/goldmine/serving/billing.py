"""Invoices from usage records: one line per model and one per app, in integer minor units, reconciling exactly
with the records.

For a tenant and a calendar month (UTC), each line sums the model's billable records (calls, texts, input
tokens). The plan's free calls and free tokens are allocated to lines in model-name order until used up.
A line costs `billable_calls * per_call_minor + round_half_up(billable_tokens * per_1k_tokens_minor / 1000)
+ round_half_up(output_tokens * per_1k_output_tokens_minor / 1000)`, computed with integers and `Decimal` (never
float); the total is the sum of the lines. Output tokens are what the generation routes wrote and sent; the free
tokens of a plan cover input tokens only.

An app (`goldmine.apps`) is a product of its own: its calls (whichever models they ran) make one line, after the
model lines, priced per call at the plan's `app_per_call_minor[app]` (else `per_call_minor`), with no token price
and no free tier.

Fine-tuning jobs are one more line, `model` = `JOBS_LINE` (`kind` "jobs"), when the tenant has jobs that ended in
the month: their CPU time (`goldmine.serving.jobs` says what is counted, for cancelled and failed jobs too) at
`per_cpu_hour_minor`, `round_half_up(cpu_ms * per_cpu_hour_minor / 3_600_000)`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from goldmine.errors import ConfigError
from goldmine.serving.db import Database, Tenant
from goldmine.serving.errors import NotFound
from goldmine.serving.jobs import job_cpu_ms
from goldmine.serving.metering import usage_summary
from goldmine.serving.ratelimit import next_month_start
from goldmine.serving.settings import ServingSettings

CSV_FIELDS = ["tenant", "month", "model", "calls", "free_calls", "items", "input_tokens", "free_tokens",
              "output_tokens", "per_call_minor", "per_1k_tokens_minor", "per_1k_output_tokens_minor", "amount_minor",
              "currency", "app", "kind", "jobs", "cpu_ms", "per_cpu_hour_minor"]
JOBS_LINE = "(fine-tuning jobs)"  # the model column of the jobs line: parentheses keep it apart from model names


@dataclass
class InvoiceLine:
    model: str
    calls: int
    items: int
    input_tokens: int
    free_calls: int  # of `calls`, covered by the free tier
    free_tokens: int  # of `input_tokens`, covered by the free tier
    per_call_minor: int
    per_1k_tokens_minor: int
    amount_minor: int
    output_tokens: int = 0  # generated tokens (completions)
    per_1k_output_tokens_minor: int = 0
    app: str | None = None  # an app's line (its calls, whichever models they ran); model is then ""
    kind: str = "api"  # "api": calls to a model; "jobs": fine-tuning jobs by CPU time
    jobs: int = 0  # jobs line: jobs that ended in the month
    cpu_ms: int = 0  # jobs line: their CPU time
    per_cpu_hour_minor: int = 0


@dataclass
class Invoice:
    tenant: str
    month: str  # YYYY-MM
    plan: str
    currency: str
    start: str
    end: str
    lines: list[InvoiceLine] = field(default_factory=list)
    total_minor: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for line in self.lines:
            writer.writerow({"tenant": self.tenant, "month": self.month, "currency": self.currency, **asdict(line)})
        writer.writerow({"tenant": self.tenant, "month": self.month, "model": "TOTAL", "calls": self.calls,
                         "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                         "amount_minor": self.total_minor, "currency": self.currency})
        return out.getvalue()


def parse_month(month: str) -> datetime:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month) or not 1 <= int(month[:4]) <= 9998:
        raise ConfigError(f"month must look like 2026-11, got {month!r}")
    return datetime(int(month[:4]), int(month[5:]), 1)


def token_amount(tokens: int, per_1k_minor: int) -> int:
    """Price of `tokens` at `per_1k_minor` per 1000, rounded half-up to a whole minor unit."""
    return int((Decimal(tokens) * per_1k_minor / 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def invoice(db: Database, settings: ServingSettings, tenant: str, month: str) -> Invoice:
    """The invoice of `tenant` for `month` (YYYY-MM) under the tenant's price plan."""
    start = parse_month(month)
    end = next_month_start(start)
    with db.session() as session:
        row = session.get(Tenant, tenant)
        if row is None:
            raise NotFound(f"no tenant named {tenant!r}")
        plan_name = row.plan
    plan = settings.plans.get(plan_name)
    if plan is None:
        raise ConfigError(f"tenant {tenant!r} is on plan {plan_name!r}, which the settings do not define "
                          f"(plans: {', '.join(sorted(settings.plans))})")
    summary = usage_summary(db, tenant, start, end)
    free_calls, free_tokens = plan.free_calls, plan.free_tokens
    result = Invoice(tenant, month, plan_name, plan.currency, summary["start"], summary["end"])
    for usage in summary["by_model"]:  # model-name order
        line_free_calls = min(free_calls, usage["calls"])
        line_free_tokens = min(free_tokens, usage["input_tokens"])
        free_calls -= line_free_calls
        free_tokens -= line_free_tokens
        amount = ((usage["calls"] - line_free_calls) * plan.per_call_minor
                  + token_amount(usage["input_tokens"] - line_free_tokens, plan.per_1k_tokens_minor)
                  + token_amount(usage["output_tokens"], plan.per_1k_output_tokens_minor))
        result.lines.append(InvoiceLine(usage["model"], usage["calls"], usage["items"], usage["input_tokens"],
                                        line_free_calls, line_free_tokens, plan.per_call_minor,
                                        plan.per_1k_tokens_minor, amount, usage["output_tokens"],
                                        plan.per_1k_output_tokens_minor))
    for usage in summary["by_app"]:  # app-name order, after the models
        price = plan.app_per_call_minor.get(usage["app"], plan.per_call_minor)
        result.lines.append(InvoiceLine("", usage["calls"], usage["items"], usage["input_tokens"], 0, 0, price, 0,
                                        usage["calls"] * price, usage["output_tokens"], 0, app=usage["app"]))
    jobs, cpu_ms = job_cpu_ms(db, tenant, start, end)
    if jobs:
        amount = int((Decimal(cpu_ms) * plan.per_cpu_hour_minor / 3_600_000).quantize(Decimal(1),
                                                                                      rounding=ROUND_HALF_UP))
        result.lines.append(InvoiceLine(JOBS_LINE, 0, 0, 0, 0, 0, 0, 0, amount, kind="jobs", jobs=jobs,
                                        cpu_ms=cpu_ms, per_cpu_hour_minor=plan.per_cpu_hour_minor))
    result.total_minor = sum(line.amount_minor for line in result.lines)
    result.calls = summary["calls"]
    result.input_tokens = summary["input_tokens"]
    result.output_tokens = summary["output_tokens"]
    return result
