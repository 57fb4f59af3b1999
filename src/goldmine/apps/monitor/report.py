"""`report`: each company's sentiment over time with its alerts, as one PNG per company and a static HTML page.

Each chart has two panels over the company's windows: the mean sentiment score (P(positive) - P(negative), -1..1)
with the share of negative items, and the number of items; every alert is a red marker on the window it fired
in. The page lists the companies (items, negative share, alerts) with their charts and every alert's message.
Everything is written into one directory that can be opened without a server.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from goldmine.apps.monitor.config import MonitorConfig
from goldmine.apps.monitor.store import MonitorAggregate, MonitorAlert
from goldmine.serving.db import Database


@dataclass
class CompanySeries:
    company: str
    starts: list[datetime] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    mean_score: list[float] = field(default_factory=list)
    negative_share: list[float] = field(default_factory=list)
    alerts: list[MonitorAlert] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.items)


def series(db: Database, config: MonitorConfig, window: str, companies: list[str] | None = None, top: int = 12,
           since: datetime | None = None, until: datetime | None = None) -> list[CompanySeries]:
    """The `top` companies by items (or the ones named), each with its windows in time order and its alerts."""
    tenant = config.tenant
    where = [MonitorAggregate.tenant_id == tenant, MonitorAggregate.window == window]
    if since is not None:
        where.append(MonitorAggregate.bucket_start >= since)
    if until is not None:
        where.append(MonitorAggregate.bucket_start < until)
    with db.session() as session:
        if companies is None:
            companies = list(session.scalars(select(MonitorAggregate.company).where(*where)
                                             .group_by(MonitorAggregate.company)
                                             .order_by(func.sum(MonitorAggregate.items).desc(),
                                                       MonitorAggregate.company).limit(top)))
        out = []
        for company in companies:
            entry = CompanySeries(company)
            for row in session.scalars(select(MonitorAggregate).where(*where, MonitorAggregate.company == company)
                                       .order_by(MonitorAggregate.bucket_start)):
                entry.starts.append(row.bucket_start)
                entry.items.append(row.items)
                entry.mean_score.append(row.score_sum / row.items if row.items else 0.0)
                entry.negative_share.append(row.negative / row.items if row.items else 0.0)
            alert_where = [MonitorAlert.tenant_id == tenant, MonitorAlert.company == company]
            if since is not None:
                alert_where.append(MonitorAlert.bucket_start >= since)
            if until is not None:
                alert_where.append(MonitorAlert.bucket_start < until)
            entry.alerts = list(session.scalars(select(MonitorAlert).where(*alert_where)
                                                .order_by(MonitorAlert.bucket_start)))
            out.append(entry)
    return out


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower() or "company"


def draw(entry: CompanySeries, window: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, height_ratios=[3, 1])
    top.plot(entry.starts, entry.mean_score, marker=".", lw=1.2, label="mean sentiment score")
    top.plot(entry.starts, entry.negative_share, lw=0.8, color="tab:orange", alpha=0.8, label="negative share")
    top.axhline(0, color="grey", lw=0.5)
    top.set_ylim(-1.05, 1.05)
    for i, alert in enumerate(entry.alerts):
        top.axvline(alert.bucket_start, color="red", lw=1, alpha=0.6, label="alert" if i == 0 else None)
        top.annotate(alert.rule, (alert.bucket_start, 0.95), rotation=90, fontsize=7, color="red", va="top")
    top.set_title(f"{entry.company}: sentiment per {window} window ({entry.total} items, {len(entry.alerts)} "
                  "alerts)")
    top.legend(loc="lower left", fontsize=8)
    bottom.bar(entry.starts, entry.items, width=0.8 * _width_days(entry.starts), color="tab:grey")
    bottom.set_ylabel("items")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _width_days(starts: list[datetime]) -> float:
    if len(starts) < 2:
        return 1.0
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    return max(min(gaps), 1.0) / 86_400


def write_report(db: Database, config: MonitorConfig, out_dir: str | Path, window: str | None = None,
                 companies: list[str] | None = None, top: int = 12, since: datetime | None = None,
                 until: datetime | None = None) -> Path:
    """Charts and `index.html` in `out_dir`; returns the page's path."""
    window = window or config.windows[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = series(db, config, window, companies, top, since, until)
    rows, sections, alert_rows = [], [], []
    for entry in entries:
        image = draw(entry, window, out / f"{slug(entry.company)}.png")
        negative = sum(s * n for s, n in zip(entry.negative_share, entry.items, strict=True)) / (entry.total or 1)
        name = html.escape(entry.company)
        rows.append(f"<tr><td><a href='#{slug(entry.company)}'>{name}</a></td><td>{entry.total}</td>"
                    f"<td>{negative:.0%}</td><td>{len(entry.alerts)}</td></tr>")
        sections.append(f"<h2 id='{slug(entry.company)}'>{name}</h2><img src='{image.name}' alt='{name}'>")
        alert_rows += [f"<tr><td>{a.bucket_start:%Y-%m-%d %H:%M}</td><td>{name}</td><td>{html.escape(a.rule)}</td>"
                       f"<td>{html.escape(a.message)}</td></tr>" for a in entry.alerts]
    page = out / "index.html"
    page.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>goldmine monitor: {html.escape(config.tenant)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:3px 8px;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>Financial sentiment monitor: {html.escape(config.tenant)}</h1>
<p>Sentiment per {html.escape(window)} window (mean of P(positive) - P(negative)); red lines are alerts.</p>
<table><tr><th>company</th><th>items</th><th>negative</th><th>alerts</th></tr>{''.join(rows)}</table>
<h2>Alerts</h2><table><tr><th>window</th><th>company</th><th>rule</th><th>message</th></tr>{''.join(alert_rows)}</table>
{''.join(sections)}
</body></html>
""", encoding="utf-8")
    return page
