"""The financial sentiment monitor (issue 15, part 2): a stream of dated headlines or posts -> sentiment and the
companies mentioned -> per-company aggregates over time windows in the serving database -> alert rules -> alerts
delivered to a signed webhook, e-mail and the log, exactly once each, surviving restarts.

    config.py    the app config (models, alias table, windows, rules, sinks)
    items.py     items and the CSV/JSONL stream readers (bad lines reported as file:line, the rest goes on)
    companies.py alias table + NER -> companies
    pipeline.py  analyse and store one batch (one transaction: items, aggregates, alerts, outbox, position)
    rules.py     the alert rules          delivery.py  the outbox       sinks.py  webhook, e-mail, log
    api.py       the Python API           cli.py       goldmine app monitor ...
    router.py    /v1/apps/monitor/...     backfill.py  Ray Data engine  report.py PNG + HTML    demo.py  offline demo
"""

from __future__ import annotations

from goldmine.apps import APPS
from goldmine.apps.base import AppSpec
from goldmine.apps.monitor.config import MonitorConfig

SPEC = APPS.register("monitor")(AppSpec(
    name="monitor",
    summary="Financial sentiment monitor: headlines -> sentiment per company over time -> alerts (webhook, e-mail).",
    config=MonitorConfig,
    cli="goldmine.apps.monitor.cli:app",
    router="goldmine.apps.monitor.router:router",
    background="goldmine.apps.monitor.router:deliver_forever",
))
