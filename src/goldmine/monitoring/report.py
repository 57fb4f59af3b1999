"""`goldmine drift report NAME`: a model's monitoring windows over time, as a PNG and a static HTML page.

Four panels over the windows of each version (in the order they closed): the MMD test's p-value (log scale, with
the alarm level), the out-of-scope rate and mean confidence, the share of each of the most frequent labels, and the
out-of-vocabulary rate against the training baseline. The page adds one table row per window with its figures. It
reads only `drift_windows`: the same figures `/v1/models/{name}/drift` returns, for one tenant's model.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from goldmine.serving.db import Database, DriftWindow
from goldmine.serving.registry import get_model

TOP_LABELS = 6


@dataclass
class WindowRow:
    version: str
    started_at: datetime
    ended_at: datetime
    report: dict

    def to_dict(self) -> dict:
        return {"version": self.version, "started_at": self.started_at.isoformat() + "Z",
                "ended_at": self.ended_at.isoformat() + "Z", **self.report}


def windows(db: Database, name: str, tenant: str | None = None, version: str | None = None,
            limit: int = 500) -> list[WindowRow]:
    """The model's last `limit` windows in the order they closed (a NotFound for another tenant's model)."""
    with db.session() as session:
        get_model(session, name, tenant)
        query = select(DriftWindow).where(DriftWindow.model_name == name)
        if version is not None:
            query = query.where(DriftWindow.version == version)
        rows = list(session.scalars(query.order_by(DriftWindow.ended_at.desc(), DriftWindow.id.desc())
                                    .limit(limit)))
    return [WindowRow(r.version, r.started_at, r.ended_at, json.loads(r.report_json)) for r in reversed(rows)]


def write_report(rows: list[WindowRow], name: str, out: str | Path, alarm_p_value: float = 0.01) -> dict[str, Path]:
    """Write `drift.png` and `drift.html` into `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x = list(range(1, len(rows) + 1))
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    p_values = [r.report.get("mmd_p_value") for r in rows]
    tested = [(i, p) for i, p in zip(x, p_values, strict=True) if p is not None]
    if tested:
        axes[0].semilogy([i for i, _ in tested], [p for _, p in tested], "o-", label="MMD p-value")
    axes[0].axhline(alarm_p_value, color="red", linestyle="--", label=f"alarm below {alarm_p_value}")
    axes[0].set_ylabel("p-value")
    axes[0].legend(loc="lower left", fontsize=8)
    axes[1].plot(x, [r.report["out_of_scope_rate"] for r in rows], "o-", label="out-of-scope rate")
    axes[1].plot(x, [r.report.get("mean_confidence") for r in rows], "s-", label="mean confidence")
    axes[1].set_ylim(0, 1)
    axes[1].legend(loc="lower left", fontsize=8)
    totals: dict[str, int] = {}
    for r in rows:
        for label, count in r.report["label_counts"].items():
            totals[label] = totals.get(label, 0) + count
    for label in sorted(totals, key=totals.get, reverse=True)[:TOP_LABELS]:
        axes[2].plot(x, [r.report["label_counts"].get(label, 0) / max(r.report["texts"], 1) for r in rows], "o-",
                     label=label)
    axes[2].set_ylabel("label share")
    if totals:
        axes[2].legend(loc="upper left", fontsize=7, ncol=3)
    oov = [(i, r.report.get("oov_rate"), r.report.get("oov_rate_training")) for i, r in zip(x, rows, strict=True)]
    oov = [t for t in oov if t[1] is not None]
    if oov:
        axes[3].plot([i for i, _, _ in oov], [v for _, v, _ in oov], "o-", label="out-of-vocabulary rate")
        axes[3].plot([i for i, _, _ in oov], [b for _, _, b in oov], "--", label="training baseline")
        axes[3].legend(loc="upper left", fontsize=8)
    axes[3].set_xlabel("window (in the order they closed)")
    fig.suptitle(f"{name}: monitoring windows")
    fig.tight_layout()
    png = out / "drift.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    page = out / "drift.html"
    page.write_text(_page(rows, name, alarm_p_value), encoding="utf-8")
    return {"png": png, "html": page}


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _page(rows: list[WindowRow], name: str, alarm_p_value: float) -> str:
    head = ("<tr><th>#</th><th>version</th><th>closed (UTC)</th><th>texts</th><th>MMD p-value</th>"
            "<th>out-of-scope</th><th>mean confidence</th><th>median words</th><th>OOV (training)</th>"
            "<th>label JS (bits)</th><th>alarm</th></tr>")
    body = []
    for i, row in enumerate(rows, 1):
        r = row.report
        oov = f"{_cell(r.get('oov_rate'))} ({_cell(r.get('oov_rate_training'))})"
        body.append(f"<tr><td>{i}</td><td>{_cell(row.version)}</td><td>{row.ended_at:%Y-%m-%d %H:%M}</td>"
                    f"<td>{r['texts']}</td><td>{_cell(r.get('mmd_p_value'))}</td>"
                    f"<td>{_cell(r['out_of_scope_rate'])}</td><td>{_cell(r.get('mean_confidence'))}</td>"
                    f"<td>{_cell(r['median_words'])}</td><td>{oov}</td><td>{_cell(r.get('label_js_divergence'))}</td>"
                    f"<td>{'yes' if r.get('alarm') else 'no'}</td></tr>")
    title = html.escape(f"{name}: drift report")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
            f"<h1>{title}</h1><p>{len(rows)} windows; the drift alarm is a window whose MMD p-value is below "
            f"{alarm_p_value}.</p><img src='drift.png' alt='p-value, out-of-scope rate, label shares and "
            f"out-of-vocabulary rate per window'><table>{head}{''.join(body)}</table></body></html>\n")
