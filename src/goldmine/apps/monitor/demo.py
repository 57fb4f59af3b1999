"""`goldmine app monitor demo`: the whole monitor offline, on data written here.

It writes a synthetic headline stream (five made-up companies over 45 days, with a scripted crisis for one and a
bad week for another, and two malformed lines), and labeled synthetic headlines from disjoint phrasings; fine-tunes
the bundled MiniLM on those into a sentiment model, registers it in a serving database of its own, writes the
monitor's app config, streams the headlines through the monitor (alerts to the log), and draws the report.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml

COMPANIES = {  # name -> (ticker, aliases)
    "Northwind Bank": ("NWB", ["Northwind"]),
    "Contoso Motors": ("CTSO", ["Contoso"]),
    "Fabrikam Energy": ("FABR", ["Fabrikam"]),
    "Tailspin Air": ("TAIL", ["Tailspin"]),
    "Globex Retail": ("GLBX", ["Globex"]),
}
# (stream phrasing, training phrasing): the model is trained on one set and watches the other
TEMPLATES = {
    "positive": (["{c} beats profit forecasts as sales jump {n}%", "{c} raises full-year outlook after strong quarter",
                  "Analysts upgrade {c} to buy on record orders", "{c} shares surge {n}% on upbeat guidance"],
                 ["{c} reports record revenue, up {n}%", "{c} wins major contract, shares climb",
                  "{c} lifts dividend by {n}% on robust earnings", "Strong demand boosts {c} quarterly profit"]),
    "negative": (["{c} shares plunge {n}% after profit warning", "{c} cuts outlook as demand slumps",
                  "Regulators probe {c} over accounting irregularities", "{c} misses estimates, announces layoffs"],
                 ["{c} posts quarterly loss, stock falls {n}%", "{c} recalls products, shares tumble",
                  "Analysts downgrade {c} to sell on weak orders", "{c} faces lawsuit, revenue drops {n}%"]),
    "neutral": (["{c} to hold annual general meeting on {d}", "{c} appoints new head of investor relations",
                 "{c} schedules earnings call for {d}", "{c} opens office in {city}"],
                ["{c} announces date of quarterly report", "{c} names board member", "{c} moves headquarters to "
                 "{city}", "{c} publishes sustainability report"]),
}
CITIES = ["Oslo", "Lyon", "Austin", "Osaka", "Porto", "Leeds"]


def _headline(rng: random.Random, label: str, company: str, training: bool) -> str:
    text = rng.choice(TEMPLATES[label][1 if training else 0])
    name = company if training or rng.random() < 0.6 else rng.choice(COMPANIES[company][1])
    return text.format(c=name, n=rng.randint(2, 40), d=f"{rng.randint(1, 28)} May", city=rng.choice(CITIES))


def write_stream(path: Path, days: int = 45, seed: int = 0) -> Path:
    """JSONL items in time order. Tailspin Air has a crisis on days 30-32 (mostly negative, busy); Contoso Motors
    a bad week from day 18; lines 7 and 40 are malformed (shown as file:line by ingest)."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2)
    lines = []
    for day in range(days):
        for company, (ticker, _) in COMPANIES.items():
            mix = {"positive": 0.3, "negative": 0.15, "neutral": 0.55}
            count = rng.randint(2, 5)
            if company == "Tailspin Air" and 30 <= day <= 32:
                mix, count = {"positive": 0.05, "negative": 0.85, "neutral": 0.1}, rng.randint(8, 12)
            if company == "Contoso Motors" and 18 <= day <= 24:
                mix = {"positive": 0.1, "negative": 0.5, "neutral": 0.4}
            for _ in range(count):
                label = rng.choices(list(mix), weights=list(mix.values()))[0]
                moment = start + timedelta(days=day, minutes=rng.randint(0, 24 * 60 - 1))
                item = {"time": moment.isoformat() + "Z", "text": _headline(rng, label, company, training=False)}
                if rng.random() < 0.5:
                    item["tickers"] = [ticker]
                lines.append((moment, json.dumps(item)))
    lines.sort()
    out = [line for _, line in lines]
    out.insert(6, '{"time": "2026-03-02T09:00:00Z", "text": "Northwind Bank opens')  # cut off: not JSON
    out.insert(39, json.dumps({"time": "yesterday", "text": "Globex Retail names new CFO"}))  # no usable date
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def write_labeled(path: Path, per_label: int = 120, seed: int = 1, stream_phrasings: bool = False) -> Path:
    """Labeled headlines in the training phrasings (never the stream's, unless `stream_phrasings`: for a model with
    no pretraining to carry it from one phrasing to the other, as the tests' tiny one), as JSONL text,label."""
    rng = random.Random(seed)
    rows = [{"text": _headline(rng, label, rng.choice(list(COMPANIES)), training=not stream_phrasings or i % 2 == 0),
             "label": label} for label in TEMPLATES for i in range(per_label)]
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_app_config(path: Path, tenant: str, model: str, sinks: list[dict] | None = None) -> Path:
    config = {
        "app": "monitor", "tenant": tenant,
        "models": {"sentiment": {"name": model, "version": "production"}},
        "companies": {name: {"tickers": [ticker], "aliases": aliases}
                      for name, (ticker, aliases) in COMPANIES.items()},
        "windows": ["1d"],
        "rules": [
            {"name": "negative-burst", "kind": "negative_share", "window": "1d", "threshold": 0.6, "min_items": 5},
            {"name": "sentiment-drop", "kind": "zscore", "window": "1d", "metric": "mean_score", "k": 2.5,
             "direction": "down", "baseline": 14, "min_baseline": 5, "min_items": 3},
        ],
        "sinks": sinks or [{"type": "log"}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class DemoResult:
    stream: Path
    app_config: Path
    report: Path
    items: int
    issues: list[str]
    alerts: list[str]


def run_demo(out_dir: str | Path, base_model: str = "bundled", quick: bool = False, console=None) -> DemoResult:
    """Everything above, into `out_dir`. `quick`: a few training steps only (tests); `base_model`: what to fine-tune
    (the bundled MiniLM by default)."""
    import goldmine
    from goldmine.apps.base import load_app_config
    from goldmine.apps.monitor import api
    from goldmine.apps.monitor.report import write_report
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    say = console.print if console is not None else (lambda *_: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream = write_stream(out / "headlines.jsonl")
    labeled = write_labeled(out / "labeled.jsonl")
    say(f"wrote {stream} (the stream) and {labeled} (labeled headlines to fine-tune on)")
    model_dir = out / "sentiment-model"
    if not (model_dir / "goldmine.json").is_file():
        say(f"fine-tuning {base_model} on {labeled.name} ...")
        goldmine.train(None, **{"task": "classification", "data.train": labeled, "model.name": base_model,
                                "output_dir": model_dir, "model.max_length": 48, "training.batch_size": 16,
                                "training.eval_strategy": "none", "training.linear_probe": False,
                                **({"training.max_steps": 8} if quick else {"training.epochs": 2})})
    settings = load_settings(data_dir=out / "serving", preload=False)
    db = open_database(settings)
    try:
        info = register(db, settings.registry_dir, "demo-sentiment", model_dir, "demo")
        say(f"registered demo-sentiment version {info.version} for tenant demo")
        config = load_app_config(write_app_config(out / "monitor.yaml", "demo", "demo-sentiment"), "monitor")
        run = api.open_monitor(config, db)
        result = api.ingest(run, stream, resume=False)
        for issue in result.issues:
            say(f"[yellow]skipped[/] {issue}")
        say(f"{result.items} items ({result.stored} new) in {result.seconds:.1f}s, {len(result.issues)} malformed "
            f"lines skipped, {len(result.alerts)} alerts")
        for alert in result.alerts:
            say(f"  [red]alert[/] {alert.message}")
        page = write_report(db, config, out / "report")
        say(f"report: {page}")
    finally:
        db.dispose()
    return DemoResult(stream, out / "monitor.yaml", page, result.items, [str(i) for i in result.issues],
                      [a.message for a in result.alerts])
