"""What the console shows that the HTTP API's functions do not return in that shape: usage per day and model, a
model version's reports read from its directory, a job's curves from its log lines.

Everything here reads; nothing writes. Model directories are found through the registry (`ModelVersion.path`)
after the tenant check, never from a path the browser sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from goldmine.serving.db import AliasChange, Database, GateReport, ModelAlias, ModelVersion, UsageRecord
from goldmine.serving.registry import get_model

_LOSS = re.compile(r"step (\d+)/\d+\s+loss ([0-9.]+)")
_DEV = re.compile(r"step (\d+)/\d+\s+(dev .*)")
_DEV_METRIC = re.compile(r"dev (\S+) ([0-9.]+)")
_NOT_CURVES = {"epoch", "runtime", "samples_per_second", "steps_per_second"}


def usage_by_day(db: Database, tenant: str, start: datetime, end: datetime) -> tuple[list[str], dict[str, list[int]]]:
    """(days, {model or app: calls per day}) of the billable calls in [start, end): the usage chart's figures,
    counted with the same filter as `metering.usage_summary` (answered calls only)."""
    day = func.date(UsageRecord.created_at)
    with db.session() as session:
        rows = session.execute(
            select(day, UsageRecord.app, UsageRecord.model, func.count())
            .where(UsageRecord.tenant_id == tenant, UsageRecord.created_at >= start, UsageRecord.created_at < end,
                   UsageRecord.status == 200)
            .group_by(day, UsageRecord.app, UsageRecord.model)).all()
    days, current = [], start.date()
    while current < end.date():
        days.append(current.isoformat())
        current += timedelta(days=1)
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[int]] = {}
    for when, app, model, calls in rows:
        name = f"app {app}" if app else model
        key = when.isoformat() if isinstance(when, date) else str(when)[:10]
        if key in index:
            series.setdefault(name, [0] * len(days))[index[key]] += int(calls)
    return days, dict(sorted(series.items()))


@dataclass
class VersionReport:
    version: str
    task: str
    created_at: str
    aliases: list[str]
    before_after: dict | None  # metrics.json's {"system": {"metric": value}}
    parity: dict | None  # parity.json of an export, when the version was exported
    gate: dict | None  # the newest regression-gate report with this version as the candidate (`gate_reports`)


@dataclass
class ModelDetail:
    name: str
    tenant: str
    aliases: dict[str, str]
    versions: list[VersionReport] = field(default_factory=list)  # newest first
    history: list[dict] = field(default_factory=list)  # alias moves, newest first

    def rollback_to(self, alias: str = "production") -> str | None:
        """The version a rollback of `alias` would return to (as `registry.rollback` picks it), else None."""
        latest = next((h for h in self.history if h["alias"] == alias and not h["rolled_back"]), None)
        return latest["previous"] if latest else None


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def model_detail(db: Database, name: str, tenant: str | None) -> ModelDetail:
    """The model as `tenant` may see it (None: an admin), with each version's reports. Foreign: NotFound."""
    with db.session() as session:
        model = get_model(session, name, tenant)
        aliases = {a.alias: a.version for a in session.scalars(select(ModelAlias).where(ModelAlias.model_name == name)
                                                                .order_by(ModelAlias.alias))}
        versions = session.scalars(select(ModelVersion).where(ModelVersion.model_name == name)
                                   .order_by(ModelVersion.id.desc())).all()
        changes = session.scalars(select(AliasChange).where(AliasChange.model_name == name)
                                  .order_by(AliasChange.id.desc()).limit(20)).all()
        detail = ModelDetail(name, model.tenant_id, aliases)
        detail.history = [{"alias": c.alias, "version": c.version, "previous": c.previous_version,
                           "at": c.created_at.isoformat(timespec="seconds") + "Z",
                           "rolled_back": c.rolled_back_at is not None} for c in changes]
        rows = [(v.version, v.task, v.created_at, Path(v.path)) for v in versions]
        gates: dict[str, dict] = {}
        for report in session.scalars(select(GateReport).where(GateReport.model_name == name)
                                      .order_by(GateReport.id.desc())):
            if report.candidate not in gates:  # the newest run per candidate
                gates[report.candidate] = {**json.loads(report.report_json),
                                           "created_at": report.created_at.isoformat(timespec="seconds") + "Z"}
    for version, task, created, path in rows:
        metrics = _json(path / "metrics.json") or {}
        parity = _json(path / "parity.json") or _json(path / "onnx" / "parity.json")
        detail.versions.append(VersionReport(
            version, task, created.isoformat(timespec="seconds") + "Z",
            sorted(alias for alias, v in aliases.items() if v == version), metrics.get("before_after"), parity,
            gates.get(version)))
    return detail


def job_curves(log_lines: list[str]) -> dict[str, list[tuple[int, float]]]:
    """{"loss": [(step, value)], "dev <metric>": [...]} from a job's log lines (the last `jobs.LOG_LINES` of them:
    a long job's curve shows its latest part)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for line in log_lines:
        if match := _LOSS.search(line):
            curves.setdefault("loss", []).append((int(match[1]), float(match[2])))
        elif match := _DEV.search(line):
            for metric, value in _DEV_METRIC.findall(match[2]):
                if metric in _NOT_CURVES:
                    continue
                curves.setdefault(f"dev {metric}", []).append((int(match[1]), float(value)))
    return curves
