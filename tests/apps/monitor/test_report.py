"""`report`: a PNG per company with its sentiment over time and its alerts, and a static HTML page."""

from __future__ import annotations

from goldmine.apps.monitor.config import MonitorConfig
from goldmine.apps.monitor.pipeline import Monitor
from goldmine.apps.monitor.report import series, write_report

from .conftest import negative_days


def test_report_draws_each_company_with_its_alerts(db, tmp_path):
    config = MonitorConfig.model_validate({
        "app": "monitor", "tenant": "acme", "models": {"sentiment": {"name": "fin-sentiment"}},
        "companies": {"Tailspin Air": {"tickers": ["TAIL"]}},
        "rules": [{"name": "burst", "kind": "negative_share", "window": "1d", "threshold": 0.6, "min_items": 5}]})
    alerts = negative_days(Monitor(config, db), 3)
    [entry] = series(db, config, "1d")
    assert (entry.company, entry.items, entry.mean_score) == ("Tailspin Air", [5, 5, 5], [-0.85] * 3)
    assert [a.id for a in entry.alerts] == [a.id for a in alerts]
    page = write_report(db, config, tmp_path / "report")
    html = page.read_text()
    png = tmp_path / "report" / "tailspin-air.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "<img src='tailspin-air.png'" in html and html.count("rule burst fires") == 3
    assert "<td>15</td><td>100%</td><td>3</td>" in html
