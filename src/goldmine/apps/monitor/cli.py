"""`goldmine app monitor ...`: ingest, deliver, backfill, status, report, demo (each a few lines over `api`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from goldmine.apps.cli import AppConfigOpt, ConfigOpt, app_config, console, err_console, fail, serving
from goldmine.errors import GoldmineError

app = typer.Typer(help="Financial sentiment monitor: headlines -> sentiment per company over time -> alerts.",
                  no_args_is_help=True)
APP = "monitor"
FormatOpt = Annotated[str, typer.Option("--format", help="csv | jsonl | auto (from the file name; stdin: jsonl).")]
RuntimeOpt = Annotated[str, typer.Option(help="torch | onnx | onnx-int8 | auto (the fastest export of the model).")]


def _open(config: Path | None, app_config_file: Path | None, runtime: str = "auto"):
    from goldmine.apps.monitor.api import open_monitor

    settings, db = serving(config)
    loaded = app_config(APP, app_config_file, settings)
    try:
        return open_monitor(loaded, db, runtime=runtime)
    except GoldmineError as err:
        fail(err)


def _summary(report) -> None:
    resumed = f", resumed after line {report.resumed_at_line}" if report.resumed_at_line else ""
    console.print(f"{report.items} items read ({report.stored} new, {report.duplicates} seen before), "
                  f"{len(report.issues)} malformed records skipped{resumed}; {report.items_per_second:.0f} items/s")
    console.print(f"{len(report.alerts)} alerts raised; {report.delivered} deliveries made, {report.pending} queued"
                  + (" (a sink is down: `goldmine app monitor deliver --watch` retries)" if report.pending else ""))


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="CSV or JSONL file, or - for stdin.")],
    format_: FormatOpt = "auto",
    resume: Annotated[bool, typer.Option(help="Start after the last committed batch of this file.")] = True,
    deliver: Annotated[bool, typer.Option(help="Send alerts as they are raised.")] = True,
    batch_size: Annotated[int | None, typer.Option(help="Items per batch (default: the config's).")] = None,
    runtime: RuntimeOpt = "auto",
    app_config_file: AppConfigOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Analyse a stream of dated items: sentiment, companies, aggregates, alerts. Bad lines are reported as
    file:line and skipped; a restart resumes where the last run stopped."""
    from goldmine.apps.monitor.api import ingest as run

    monitor = _open(config, app_config_file, runtime)
    try:
        report = run(monitor, source, format_, resume=resume, deliver=deliver, batch_size=batch_size,
                     on_issue=lambda issue: err_console.print(f"[yellow]skipped[/] {escape(str(issue))}",
                                                              highlight=False))
    except (GoldmineError, ValueError) as err:
        fail(err if isinstance(err, GoldmineError) else GoldmineError(str(err)))
    _summary(report)


@app.command()
def deliver(
    watch: Annotated[bool, typer.Option(help="Keep delivering (every delivery.poll_seconds).")] = False,
    until_empty: Annotated[bool, typer.Option(help="With --watch: stop once nothing is queued.")] = False,
    timeout: Annotated[float | None, typer.Option(help="With --watch: stop after this many seconds.")] = None,
    app_config_file: AppConfigOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Send queued alerts (those a sink did not take yet), with backoff between attempts."""
    from goldmine.apps.monitor.api import deliver as run
    from goldmine.apps.monitor.delivery import Outbox

    settings, db = serving(config)
    loaded = app_config(APP, app_config_file, settings)
    try:
        stats = run(Outbox(loaded, db), watch=watch, until_empty=until_empty, timeout=timeout)
    except GoldmineError as err:
        fail(err)
    console.print(f"{stats.delivered} delivered, {stats.failed_attempts} failed attempts, {stats.pending} queued"
                  + (f", {stats.given_up} given up" if stats.given_up else ""))


@app.command()
def backfill(
    source: Annotated[Path, typer.Argument(help="CSV or JSONL history.")],
    format_: FormatOpt = "auto",
    engine: Annotated[str | None, typer.Option(help="local | ray (default: the config's backfill.engine).")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray: model replicas (default: backfill.workers).")] = None,
    runtime: RuntimeOpt = "auto",
    app_config_file: AppConfigOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ingest a large history, locally or on Ray Data; alerts are delivered at the end."""
    from goldmine.apps.monitor.api import backfill as run

    monitor = _open(config, app_config_file, runtime)
    try:
        report = run(monitor, source, format_, engine, workers)
    except (GoldmineError, ValueError) as err:
        fail(err if isinstance(err, GoldmineError) else GoldmineError(str(err)))
    for issue in report.issues:
        err_console.print(f"[yellow]skipped[/] {escape(str(issue))}", highlight=False)
    _summary(report)


@app.command()
def status(app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Items, alerts and queued deliveries of the tenant, and how far each file was read (JSON)."""
    from goldmine.apps.monitor.api import status as run

    settings, db = serving(config)
    sys.stdout.write(json.dumps(run(db, app_config(APP, app_config_file, settings)), indent=2) + "\n")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Directory for the charts and index.html.")],
    window: Annotated[str | None, typer.Option(help="Window to draw (default: the config's first).")] = None,
    company: Annotated[list[str] | None, typer.Option(help="Only these companies (repeatable).")] = None,
    top: Annotated[int, typer.Option(help="Else the companies with the most items.")] = 12,
    app_config_file: AppConfigOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Each company's sentiment over time with its alerts: one PNG per company and a static HTML page."""
    from goldmine.apps.monitor.report import write_report

    settings, db = serving(config)
    loaded = app_config(APP, app_config_file, settings)
    try:
        page = write_report(db, loaded, out, window, company or None, top)
    except GoldmineError as err:
        fail(err)
    console.print(f"report written to {page}")


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", "-o", help="Where demo data, model and report go.")] = Path("runs/monitor-demo"),
    quick: Annotated[bool, typer.Option(help="A few training steps only (for tests).")] = False,
    model: Annotated[str, typer.Option(help="Base model to fine-tune ('bundled': all-MiniLM-L6-v2).")] = "bundled",
) -> None:
    """Offline: synthetic headlines -> fine-tuned sentiment model -> stream -> alerts in the log -> report."""
    from goldmine.apps.monitor.demo import run_demo

    try:
        run_demo(output_dir, model, quick=quick, console=console)
    except GoldmineError as err:
        fail(err)
