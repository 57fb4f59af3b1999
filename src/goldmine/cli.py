"""The `goldmine` command line: each command is a few lines over the same functions Python users call."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from goldmine.errors import GoldmineError

app = typer.Typer(help="Fine-tune a small pretrained model on your labeled text, measure it, predict.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Check and split labeled data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)], force=True)
    logging.getLogger("goldmine").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def _fail(err: GoldmineError) -> None:
    err_console.print(f"[bold red]error:[/] {err}", highlight=False)
    raise typer.Exit(2)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")] = False) -> None:
    _setup_logging(verbose)


@data_app.command("check")
def data_check(
    file: Annotated[Path, typer.Argument(help="Training file (CSV/TSV/JSONL/CoNLL).")],
    dev: Annotated[Path | None, typer.Option(help="Dev file, checked for leakage and unknown labels.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test file, checked the same way.")] = None,
    text_column: str = "text",
    label_column: str = "label",
    strict: Annotated[bool, typer.Option(help="CoNLL: reject I- tags that continue no entity.")] = False,
    max_length: Annotated[int, typer.Option(help="Model max length for the over-length count.")] = 128,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
) -> None:
    """Validate a file (every bad line as file:line: reason) and print its quality report."""
    from goldmine.data.readers import ReadOptions, read_file
    from goldmine.data.report import quality_report, render_report
    from goldmine.data.validate import check_splits

    options = ReadOptions(text_column=text_column, label_column=label_column, strict=strict)
    try:
        splits = {"train": read_file(file, options)}
        for name, path in (("dev", dev), ("test", test)):
            if path:
                splits[name] = read_file(path, options)
        check_splits(splits["train"], {k: v for k, v in splits.items() if k != "train"})
    except GoldmineError as err:
        _fail(err)
    report = quality_report(splits, _bundled_token_counter(), max_length)
    render_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
    console.print(f"[green]ok[/]: {sum(len(s) for s in splits.values())} examples read, nothing dropped")


def _bundled_token_counter():
    """Count tokens with the bundled tokenizer when it is installed (for the over-length check)."""
    try:
        from goldmine.modeling.backbone import load_tokenizer, resolve_base_model

        tokenizer = load_tokenizer(resolve_base_model("bundled"))
    except GoldmineError:
        return None
    return lambda texts: [len(ids) for ids in tokenizer(texts)["input_ids"]]


@data_app.command("split")
def data_split(
    file: Annotated[Path, typer.Argument(help="One labeled file to split.")],
    out: Annotated[Path, typer.Option(help="Directory for train/dev/test files.")],
    ratios: Annotated[str, typer.Option(help="train,dev,test shares.")] = "0.8,0.1,0.1",
    seed: int = 13,
) -> None:
    """Reproducible stratified train/dev/test split, written in the input's format."""
    from goldmine.data.readers import read_file
    from goldmine.data.split import split_data
    from goldmine.data.writers import write_data

    try:
        shares = tuple(float(x) for x in ratios.split(","))
        parts = split_data(read_file(file), shares, seed)  # type: ignore[arg-type]
    except ValueError:
        _fail(GoldmineError(f"--ratios must be three numbers like 0.8,0.1,0.1, got {ratios!r}"))
    except GoldmineError as err:
        _fail(err)
    for name, part in zip(("train", "dev", "test"), parts, strict=True):
        path = write_data(part, out / f"{name}{file.suffix}")
        console.print(f"{name}: {len(part)} examples -> {path}")


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config (optional: flags alone work too).")] = None,
    task: Annotated[str | None, typer.Option(help="classification | multilabel | ner")] = None,
    train_file: Annotated[Path | None, typer.Option("--train", help="Training file.")] = None,
    dev_file: Annotated[Path | None, typer.Option("--dev", help="Dev file.")] = None,
    test_file: Annotated[Path | None, typer.Option("--test", help="Test file.")] = None,
    model: Annotated[str | None, typer.Option(help="'bundled', a model directory or a hub name.")] = None,
    strategy: Annotated[str | None, typer.Option(help="full | freeze | lora")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run directory.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Any config field: --set training.warmup_ratio=0.06")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in the output directory.")] = False,
) -> None:
    """Fine-tune, save, and print the before-vs-after table on the test data."""
    from goldmine.config import load_config
    from goldmine.evaluation.comparison import as_table

    overrides = {
        "task": task, "data.train": train_file, "data.dev": dev_file, "data.test": test_file, "model.name": model,
        "tuning.strategy": strategy, "output_dir": output_dir, "training.epochs": epochs,
        "training.max_steps": max_steps, "training.learning_rate": lr, "training.batch_size": batch_size,
        "training.seed": seed,
    }
    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(GoldmineError(f"--set expects key=value, got {item!r}"))
        overrides[key.strip()] = value
    try:
        cfg = load_config(config, overrides)
        from goldmine.training.trainer import train as run

        result = run(cfg, resume=resume)
    except GoldmineError as err:
        _fail(err)
    if result.before_after:
        console.print(as_table(result.before_after, f"{cfg.task}: before vs after fine-tuning (test data)"))
    console.print(f"model saved to [bold]{result.output_dir}[/] ({result.global_step} steps, "
                  f"{result.train_seconds:.0f}s)")


@app.command("eval")
def eval_(
    model_dir: Annotated[Path, typer.Argument(help="Run directory written by `goldmine train`.")],
    data: Annotated[Path, typer.Argument(help="Any labeled file in a supported format.")],
    out: Annotated[Path | None, typer.Option(help="Write metrics JSON and plots here.")] = None,
) -> None:
    """Accuracy/F1 (or entity F1), calibration, confusion matrix on any labeled file."""
    from goldmine.api import evaluate
    from goldmine.evaluation.evaluate import headline

    try:
        metrics = evaluate(model_dir, data, out)
    except GoldmineError as err:
        _fail(err)
    for key, value in headline(metrics).items():
        console.print(f"{key:>16}: {value:.4f}")
    console.print(f"{'ECE':>16}: {metrics['calibration']['ece']:.4f}   ({metrics['n_examples']} examples)")
    if out:
        console.print(f"metrics and plots written to {out}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Run directory written by `goldmine train`.")],
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Text to label (repeatable).")] = None,
    file: Annotated[Path | None, typer.Option(help="One text per line, or JSONL with a 'text' field.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSONL here instead of stdout.")] = None,
) -> None:
    """Labels with scores, or entities with type, text and character offsets, as JSONL."""
    from goldmine.inference.model import Model

    texts = list(text or [])
    if file:
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"] if line.lstrip().startswith("{") else line)
    if not texts:
        _fail(GoldmineError("nothing to predict: give --text or --file"))
    try:
        results = Model.load(model_dir).predict(texts)
    except GoldmineError as err:
        _fail(err)
    lines = [json.dumps({"text": t, **r}, ensure_ascii=False) for t, r in zip(texts, results, strict=True)]
    if output:
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        console.print(f"{len(lines)} predictions -> {output}")
    else:
        sys.stdout.write("\n".join(lines) + "\n")


@app.command()
def ensemble(
    runs: Annotated[list[Path], typer.Argument(help="Run directories of the same task and base model.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Ensemble directory to write.")],
) -> None:
    """Combine runs into one model that averages their probabilities (load, eval, predict it like any run)."""
    from goldmine.api import ensemble as build

    try:
        path = build(runs, output_dir)
    except GoldmineError as err:
        _fail(err)
    console.print(f"ensemble of {len(runs)} runs written to {path}")


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where demo data and models go.")] = Path(
        "runs/demo"
    ),
    quick: Annotated[bool, typer.Option(help="A few steps only (for tests).")] = False,
) -> None:
    """Write demo data, fine-tune the bundled MiniLM for intents and NER, show before vs after and predictions."""
    from goldmine.demo.run import run_demo

    try:
        run_demo(output_dir, console, quick=quick)
    except GoldmineError as err:
        _fail(err)


if __name__ == "__main__":  # pragma: no cover
    app()
