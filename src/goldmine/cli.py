"""The `goldmine` command line: each command is a few lines over the same functions Python users call."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from goldmine.apps.cli import app as apps_app
from goldmine.errors import GoldmineError
from goldmine.registry import STRATEGIES

app = typer.Typer(help="Fine-tune a small pretrained model on your labeled text, measure it, predict.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Check, split, augment labeled data; suggest what to label next.", no_args_is_help=True)
app.add_typer(data_app, name="data")
index_app = typer.Typer(help="Search indexes: build, add, delete (goldmine.retrieval.index).", no_args_is_help=True)
app.add_typer(index_app, name="index")
models_app = typer.Typer(help="The serving registry: register model versions, promote and roll back aliases.",
                         no_args_is_help=True)
keys_app = typer.Typer(help="API keys for the serving API.", no_args_is_help=True)
billing_app = typer.Typer(help="Invoices from usage records.", no_args_is_help=True)
jobs_app = typer.Typer(help="Fine-tuning jobs run by workers (the same jobs as /v1/jobs).", no_args_is_help=True)
feedback_app = typer.Typer(help="Feedback on answered calls (the same as /v1/models/{name}/feedback).",
                           no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
app.add_typer(jobs_app, name="jobs")
drift_app = typer.Typer(help="Monitoring: drift references of runs, drift reports of served models.",
                        no_args_is_help=True)
app.add_typer(drift_app, name="drift")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(billing_app, name="billing")
app.add_typer(apps_app, name="app", help="The applications built on goldmine (goldmine app list).")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error line stays one line in a log, whatever its length


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)], force=True)
    replica = int(os.environ.get("RANK", "0")) > 0  # a non-main process of a distributed run: rank 0 reports
    logging.getLogger("goldmine").setLevel(logging.ERROR if replica else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:  # transformers' own warnings and tqdm bars ("Loading weights"): goldmine's display replaces them
        from transformers.utils import logging as hf_logging

        if verbose:
            hf_logging.set_verbosity_warning()
            hf_logging.enable_progress_bar()
        else:
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _fail(err: GoldmineError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)  # paths may hold [brackets]
    raise typer.Exit(2)


@app.callback()
def main(ctx: typer.Context, verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="More log output (and transformers' raw training logs and bars).")] = False) -> None:
    _setup_logging(verbose)
    ctx.obj = {"verbose": verbose}


def _verbose(ctx: typer.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("verbose"))


@data_app.command("check")
def data_check(
    file: Annotated[Path, typer.Argument(help="Training file (CSV/TSV/JSONL/CoNLL).")],
    dev: Annotated[Path | None, typer.Option(help="Dev file, checked for leakage and unknown labels.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test file, checked the same way.")] = None,
    text_column: str = "text",
    label_column: Annotated[str | None, typer.Option(
        help="Column holding the label(s) (default: 'label', or 'labels' when the file has only that).")] = None,
    strict: Annotated[bool, typer.Option(help="CoNLL: reject I- tags that continue no entity.")] = False,
    max_length: Annotated[int, typer.Option(help="Model max length for the over-length count.")] = 128,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
) -> None:
    """Validate a file (every bad line as file:line: reason) and print its quality report."""
    from goldmine.data.check import check_files, report_of
    from goldmine.data.readers import ReadOptions
    from goldmine.data.report import render_report

    options = ReadOptions(text_column=text_column, label_column=label_column, strict=strict)
    try:
        splits = check_files(file, dev, test, options)
    except GoldmineError as err:
        _fail(err)
    report = report_of(splits, max_length)
    render_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
    console.print(f"[green]ok[/]: {sum(len(s) for s in splits.values())} examples read, nothing dropped")


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


@data_app.command("suggest")
def data_suggest(
    model_dir: Annotated[Path, typer.Argument(help="Run directory of the classification model to improve.")],
    file: Annotated[Path, typer.Argument(help="Unlabeled texts: .txt (one per line), .jsonl or .csv with 'text'.")],
    out: Annotated[Path, typer.Option(help="JSONL to write: the chosen texts, most uncertain first, label empty.")],
    top: Annotated[int, typer.Option(help="How many texts to suggest.")] = 100,
    seed: int = 0,
    runtime: RuntimeOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """The unlabeled texts worth labeling next: the most uncertain text of each of TOP embedding clusters."""
    from goldmine.data.suggest import read_texts, suggest, write_suggestions
    from goldmine.inference.model import Model

    try:
        texts = read_texts(file)
        chosen = suggest(Model.load(model_dir, runtime=runtime, threads=threads), texts, top, seed)
    except GoldmineError as err:
        _fail(err)
    write_suggestions(chosen, out)
    console.print(f"{len(chosen)} of {len(texts)} texts to label -> {out}")


@data_app.command("augment")
def data_augment(
    file: Annotated[Path, typer.Argument(help="Training file to augment (never augment dev or test data).")],
    out: Annotated[Path, typer.Option(help="File to write: the originals, then the new examples.")],
    factor: Annotated[float, typer.Option(help="New examples per original.")] = 1.0,
    ops: Annotated[str, typer.Option(help="Comma-separated edits: typo,swap,delete (texts); mention,typo (NER). "
                                     "Default: all for the file's kind.")] = "",
    seed: int = 13,
) -> None:
    """Label-preserving edited copies of a training file's examples (what `data.augment` does in training)."""
    from goldmine.data.augment import augment
    from goldmine.data.readers import read_file
    from goldmine.data.writers import write_data

    try:
        data = read_file(file)
        augmented = augment(data, factor, [op for op in ops.split(",") if op], seed)
    except GoldmineError as err:
        _fail(err)
    path = write_data(augmented, out)
    console.print(f"{len(data)} examples + {len(augmented) - len(data)} augmented -> {path}")


@app.command()
def train(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Argument(help="YAML config (optional: flags alone work too).")] = None,
    task: Annotated[str | None, typer.Option(
        help="classification | multilabel | ner | retrieval | causal_lm")] = None,
    train_file: Annotated[Path | None, typer.Option("--train", help="Training file.")] = None,
    dev_file: Annotated[Path | None, typer.Option("--dev", help="Dev file.")] = None,
    test_file: Annotated[Path | None, typer.Option("--test", help="Test file.")] = None,
    model: Annotated[str | None, typer.Option(help="'bundled', a model directory or a hub name.")] = None,
    strategy: Annotated[str | None, typer.Option(help=" | ".join(STRATEGIES.names()))] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Zero- and few-shot (zeroshot, fewshot, label_likelihood): the label file (YAML; names, descriptions, "
        "templates). See goldmine.tuning.zeroshot."
    )] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run directory.")] = None,
    out_of_scope: Annotated[str | None, typer.Option(
        "--out-of-scope", help="'None of these' by a score threshold fitted on dev: auto | max_probability | energy | "
        "prototype | mahalanobis."
    )] = None,
    oos_label: Annotated[str | None, typer.Option(
        "--oos-label", help="The label of out-of-scope examples (e.g. oos): a class if train has it, else the "
        "dev/test ground truth for the threshold.")] = None,
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
        "tuning.strategy": strategy, "tuning.zeroshot.labels": labels, "tuning.fewshot.labels": labels,
        "tuning.label_likelihood.labels": labels,
        "output_dir": output_dir,
        "training.epochs": epochs, "training.max_steps": max_steps, "training.learning_rate": lr,
        "training.batch_size": batch_size, "training.seed": seed, "out_of_scope.method": out_of_scope,
        "out_of_scope.label": oos_label,
    }
    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(GoldmineError(f"--set expects key=value, got {item!r}"))
        overrides[key.strip()] = value
    try:
        cfg = load_config(config, overrides)
        from goldmine.training.progress import display_callbacks
        from goldmine.training.trainer import train as run

        result = run(cfg, resume=resume, callbacks=display_callbacks(console, raw_logs=_verbose(ctx)))
    except GoldmineError as err:
        _fail(err)
    if not result.main_process:
        return
    if result.before_after:
        console.print(as_table(result.before_after, f"{cfg.task}: before vs after fine-tuning (test data)"))
    console.print(f"model saved to [bold]{result.output_dir}[/] ({result.global_step} steps, "
                  f"{result.train_seconds:.0f}s)")


RuntimeOpt = Annotated[str, typer.Option(
    help="What runs the model: torch | onnx | onnx-int8 | auto (the fastest export in MODEL_DIR, else torch).")]
ThreadsOpt = Annotated[int | None, typer.Option(help="onnxruntime intra-op threads (default: all usable cores).")]


@app.command("eval")
def eval_(
    model_dir: Annotated[Path, typer.Argument(help="Run directory written by `goldmine train`.")],
    data: Annotated[Path, typer.Argument(help="Any labeled file in a supported format.")],
    out: Annotated[Path | None, typer.Option(help="Write metrics JSON and plots here.")] = None,
    runtime: RuntimeOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """Accuracy/F1 (or entity F1), calibration, confusion matrix on any labeled file."""
    from goldmine.api import evaluate
    from goldmine.evaluation.evaluate import headline

    try:
        metrics = evaluate(model_dir, data, out, runtime=runtime, threads=threads)
    except GoldmineError as err:
        _fail(err)
    for key, value in headline(metrics).items():
        console.print(f"{key:>16}: {value:.4f}")
    if "calibration" in metrics:
        console.print(f"{'ECE':>16}: {metrics['calibration']['ece']:.4f}   ({metrics['n_examples']} examples)")
    elif "queries" in metrics:  # retrieval: the pairs searched as queries over a corpus
        console.print(f"{'searched':>16}: {metrics['queries']} queries over {metrics['corpus']} entries "
                      f"({metrics['n_examples']} pairs)")
    else:  # causal LM: replies written to conversations
        console.print(f"{'replies':>16}: {metrics['n_examples']} conversations, {metrics['assistant_tokens']} "
                      "reference tokens")
        for example in metrics["examples"]:
            console.print(f"  {escape(example['prompt'][:60])!s} -> {escape(example['generated'][:60])!s} "
                          f"(reference: {escape(example['reference'][:60])})")
    if oos := metrics.get("out_of_scope"):  # a model with a "none of these" rule
        for key in ("in_scope_accuracy", "oos_recall", "oos_precision", "auroc"):
            if oos[key] is not None:
                console.print(f"{key:>16}: {oos[key]:.4f}")
        console.print(f"{'oos examples':>16}: {oos['oos_examples']}")
    console.print(f"{'runtime':>16}: {_describe_runtime(metrics['runtime'])}")
    console.print(f"{'peak memory':>16}: {metrics['peak_rss_mb']:.0f} MiB resident")
    if out:
        console.print(f"metrics and plots written to {out}")


def _describe_runtime(info: dict) -> str:
    if "members" in info:
        return f"{info['runtime']} (ensemble of {len(info['members'])})"
    return f"{info['runtime']} ({', '.join(info['providers'])}, {info['intra_op_threads']} threads)"


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Run directory written by `goldmine train`.")],
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Text to label (repeatable).")] = None,
    text_b: Annotated[list[str] | None, typer.Option(
        "--text-b", help="Pair models: the second text of each --text, in the same order (repeatable).")] = None,
    file: Annotated[Path | None, typer.Option(
        help="One text per line, or JSONL with a 'text' field (and 'text_b' for a pair model).")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSONL here instead of stdout.")] = None,
    labels: Annotated[str | None, typer.Option(
        help="Zero-shot models: choose among these comma-separated labels instead of the model's own.")] = None,
    runtime: RuntimeOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """Labels with scores, or entities with type, text and character offsets, as JSONL."""
    from goldmine.inference.model import Model

    texts, texts_b = list(text or []), list(text_b or [])
    if file:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            if not line.lstrip().startswith("{"):
                texts.append(line)
                continue
            record = json.loads(line)
            if "text" not in record:
                _fail(GoldmineError(f"{file}:{number}: no 'text' field"))
            texts.append(record["text"])
            if "text_b" in record:
                texts_b.append(record["text_b"])
    if not texts:
        _fail(GoldmineError("nothing to predict: give --text or --file"))
    try:
        chosen = labels.split(",") if labels is not None else None
        results = Model.load(model_dir, runtime=runtime, threads=threads).predict(texts, texts_b or None, chosen)
    except GoldmineError as err:
        _fail(err)
    shown = [{"text": t} for t in texts] if not texts_b else [
        {"text": t, "text_b": b} for t, b in zip(texts, texts_b, strict=True)]  # predict checked the counts
    lines = [json.dumps({**s, **r}, ensure_ascii=False) for s, r in zip(shown, results, strict=True)]
    if output:
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        console.print(f"{len(lines)} predictions -> {output}")
    else:
        sys.stdout.write("\n".join(lines) + "\n")


@index_app.command("build")
def index_build(
    model_dir: Annotated[Path, typer.Argument(help="Run directory of the encoder that embeds the corpus.")],
    corpus: Annotated[Path, typer.Argument(help="JSONL (or CSV) entries; other fields are kept as payload.")],
    name: Annotated[str, typer.Option(help="Index name (lowercase letters, digits, . _ -).")],
    text_field: Annotated[str, typer.Option(help="The field that is embedded and searched.")] = "question",
    id_field: Annotated[str, typer.Option(help="Entry ids (default: the line number).")] = "id",
    out: Annotated[Path | None, typer.Option(help="Where to write it (default: MODEL_DIR/indexes/NAME).")] = None,
) -> None:
    """Embed a corpus and store it as a searchable index tied to this model."""
    from goldmine.retrieval.index import Index

    try:
        index = Index.build(model_dir, corpus, name, out, text_field, id_field)
    except GoldmineError as err:
        _fail(err)
    console.print(f"index {name!r} version {index.meta['version']}: {index.meta['count']} entries "
                  f"({index.meta['backend']}) -> {index.directory}")


@index_app.command("add")
def index_add(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    corpus: Annotated[Path, typer.Argument(help="Entries to add (new ids), in the index's format.")],
) -> None:
    """Embed and add entries; the others keep their vectors."""
    from goldmine.retrieval.index import Index, read_corpus

    try:
        index = Index.load(index_dir)
        entries = read_corpus(corpus, index.meta["text_field"], index.meta["id_field"])
        index.add(entries)
    except GoldmineError as err:
        _fail(err)
    console.print(f"added {len(entries)}: version {index.meta['version']}, {index.meta['count']} entries")


@index_app.command("delete")
def index_delete(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    ids: Annotated[list[str], typer.Option("--id", help="Entry id to delete (repeatable).")],
) -> None:
    """Remove entries by id."""
    from goldmine.retrieval.index import Index

    try:
        index = Index.load(index_dir)
        index.delete(ids)
    except GoldmineError as err:
        _fail(err)
    console.print(f"deleted {len(ids)}: version {index.meta['version']}, {index.meta['count']} entries")


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="Index directory (goldmine index build).")],
    query: Annotated[list[str], typer.Option("--query", "-q", help="Query text (repeatable).")],
    k: Annotated[int, typer.Option("-k", help="Entries per query.")] = 5,
    min_score: Annotated[float | None, typer.Option(help="Leave out entries below this cosine similarity.")] = None,
    rerank: Annotated[Path | None, typer.Option(
        help="A pair classification run (cross-encoder) that re-orders the best --candidates entries.")] = None,
    candidates: Annotated[int, typer.Option(help="Entries the re-ranker reads per query.")] = 20,
) -> None:
    """The entries nearest in meaning to each query, as JSONL (one line per query)."""
    from dataclasses import asdict

    from goldmine.inference.model import Model
    from goldmine.retrieval.index import Index

    try:
        index = Index.load(index_dir)
        if rerank is not None:
            if min_score is not None:
                _fail(GoldmineError("--min-score filters cosine scores; with --rerank the order is the re-ranker's"))
            results = index.search_and_rerank(list(query), Model.load(rerank), k, candidates)
        else:
            results = index.search(list(query), k, min_score=min_score)
    except GoldmineError as err:
        _fail(err)
    for text, hits in zip(query, results, strict=True):
        sys.stdout.write(json.dumps({"query": text, "hits": [asdict(h) for h in hits]}, ensure_ascii=False) + "\n")


PARITY_EXIT = 3  # the export ran but the parity gate rejected it


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="Run directory written by `goldmine train`.")],
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    quantize: Annotated[str | None, typer.Option(
        help="Also write a quantised graph: int8 (encoders); int4, int8 or int4,int8 (a causal LM).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Keep the export even if the parity gate fails.")] = False,
    max_loss: Annotated[float, typer.Option(
        help="Points of the task metric an exported runtime may lose against torch on the parity sample.")] = 0.5,
    data: Annotated[Path | None, typer.Option(
        help="Labeled file for the parity check (default: the run's own dev data, else its test data).")] = None,
    sample: Annotated[int | None, typer.Option(help="Measure at most N examples (default: all of them).")] = None,
    threads: ThreadsOpt = None,
    int8_scheme: Annotated[str, typer.Option(
        help="int8 scheme: full (fastest), mixed-K (the first K FFN down-projections kept fp32), mixed (all of "
             "them), or auto: the fastest the parity gate accepts (full, mixed-1, mixed-2 ... mixed).")] = "auto",
) -> None:
    """ONNX (+ int8) graphs in MODEL_DIR/onnx/, checked against torch; exit 3 if the parity gate rejects them."""
    from goldmine.api import export as run
    from goldmine.export.parity import ParityError, render_decoder_parity, render_parity

    try:
        result = run(model_dir, format_, quantize, force=force, max_loss=max_loss, data=data, sample_size=sample,
                     threads=threads, int8_scheme=int8_scheme)
    except ParityError as err:
        (render_decoder_parity if err.report.get("task") == "causal_lm" else render_parity)(err.report, console)
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(PARITY_EXIT) from None
    except GoldmineError as err:
        _fail(err)
    (render_decoder_parity if result.report.get("task") == "causal_lm" else render_parity)(result.report, console)
    if result.forced:
        err_console.print("[yellow]warning:[/] the parity gate failed; kept because of --force", highlight=False)
    fastest = list(result.files)[-1]
    console.print(f"exported {', '.join(result.files)} -> {escape(str(result.directory))} (figures in parity.json); "
                  f"`goldmine eval --runtime {fastest}` measures it; `Model.load` picks it up (and so does a server, "
                  "for versions registered from now on)")


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
    ctx: typer.Context,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where demo data and models go.")] = Path(
        "runs/demo"
    ),
    quick: Annotated[bool, typer.Option(help="A few steps only (for tests).")] = False,
    generation: Annotated[bool, typer.Option(
        help="Also LoRA-tune the bundled SmolLM2-135M-Instruct on support chats (about 10 more minutes).")] = False,
) -> None:
    """Write demo data, fine-tune the bundled MiniLM for intents and NER, show before vs after and predictions;
    with --generation, also fine-tune the bundled decoder to write support replies."""
    from goldmine.demo.run import run_demo, run_generation_demo

    try:
        run_demo(output_dir, console, quick=quick, verbose=_verbose(ctx))
        if generation:
            run_generation_demo(output_dir, console, quick=quick, verbose=_verbose(ctx))
    except GoldmineError as err:
        _fail(err)


# ---- serving: registry, keys, billing, serve ------------------------------------------------------------------

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Serving config YAML (else $GOLDMINE_CONFIG).")]


def _serving(config: Path | None):
    """Serving settings and the migrated database, or exit 2 with the reason."""
    from goldmine.serving.db import open_database
    from goldmine.serving.settings import load_settings

    try:
        settings = load_settings(config)
        return settings, open_database(settings)
    except GoldmineError as err:
        _fail(err)


@models_app.command("register")
def models_register(
    name: Annotated[str, typer.Argument(help="Model name (lowercase, digits, . _ -).")],
    model_dir: Annotated[Path, typer.Argument(help="Run directory written by `goldmine train`.")],
    tenant: Annotated[str, typer.Option(help="Tenant that owns the model (only its keys can call it).")],
    config: ConfigOpt = None,
) -> None:
    """Register MODEL_DIR as an immutable version (its content hash); the first version becomes production."""
    from goldmine.serving.registry import register

    settings, db = _serving(config)
    try:
        info = register(db, settings.registry_dir, name, model_dir, tenant)
    except GoldmineError as err:
        _fail(err)
    state = "registered" if info.created else "already registered (same content)"
    console.print(f"{name} version {info.version} {state} ({info.task}) -> {info.path}")


@models_app.command("list")
def models_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's models.")] = None,
                config: ConfigOpt = None) -> None:
    """Models with their versions and aliases."""
    from goldmine.serving.registry import list_models

    _, db = _serving(config)
    for info in list_models(db, tenant):
        aliases = ", ".join(f"{a}={v}" for a, v in info.aliases.items()) or "no aliases"
        console.print(f"[bold]{info.name}[/] ({info.task}, tenant {info.tenant}): {aliases}")
        for v in info.versions:
            console.print(f"  {v['version']}  {v['created_at']}")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    target: Annotated[str, typer.Argument(help="Version id, or an alias such as staging.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "production",
    force: Annotated[bool, typer.Option(help="Promote even if the candidate fails the regression gate.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Point an alias at a version (running servers follow within `alias_cache_seconds`, default 1 s). Moving the
    live alias runs the regression gate first and refuses a failing candidate unless --force."""
    from goldmine.serving.gate import promote_gated

    settings, db = _serving(config)
    try:
        move, gate = promote_gated(db, settings, name, target, alias, force=force)
    except GoldmineError as err:
        _fail(err)
    if gate is not None:
        _print_gate(gate.to_dict())
    console.print(f"{name} {alias}: {move.previous or '-'} -> {move.current}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "production",
    config: ConfigOpt = None,
) -> None:
    """Move an alias back to where it pointed before its latest promotion."""
    from goldmine.serving.registry import rollback

    _, db = _serving(config)
    try:
        move = rollback(db, name, alias)
    except GoldmineError as err:
        _fail(err)
    console.print(f"{name} {alias}: {move.previous} -> {move.current} (rolled back)")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to (created if new).")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: predict, train (datasets and fine-tuning jobs), "
                                        "admin.")] = "predict",
    rate: Annotated[float | None, typer.Option(help="Requests per second (token bucket).")] = None,
    monthly_quota: Annotated[int | None, typer.Option(help="Texts per calendar month (UTC).")] = None,
    plan: Annotated[str | None, typer.Option(help="Set the tenant's price plan (a name from the settings).")] = None,
    tokens_per_minute: Annotated[int | None, typer.Option(
        help="Generation routes: prompt + completion tokens per minute.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it once: only a salted hash is stored, it cannot be shown again."""
    from goldmine.serving.auth import create_key

    settings, db = _serving(config)
    if plan is not None and plan not in settings.plans:
        _fail(GoldmineError(f"--plan {plan!r} is not a configured plan: {', '.join(sorted(settings.plans))}"))
    try:
        created = create_key(db, tenant, scopes, rate, monthly_quota, plan, tokens_per_minute)
    except GoldmineError as err:
        _fail(err)
    err_console.print(f"key {created.info.id} for tenant {tenant} ({','.join(sorted(created.info.scopes))}); "
                      "store it now, it is not shown again:")
    sys.stdout.write(created.key + "\n")


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
              config: ConfigOpt = None) -> None:
    """Key ids, tenants, scopes, limits, state (never secrets)."""
    from goldmine.serving.auth import list_keys

    _, db = _serving(config)
    for k in list_keys(db, tenant):
        state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        console.print(f"{k['id']}  {k['tenant']}  {','.join(k['scopes'])}  rate={k['rate']}  "
                      f"quota={k['monthly_quota']}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (or the full key).")],
                config: ConfigOpt = None) -> None:
    """Revoke a key: its next request gets 401."""
    from goldmine.serving.auth import revoke_key

    _, db = _serving(config)
    try:
        info = revoke_key(db, key_id)
    except GoldmineError as err:
        _fail(err)
    console.print(f"key {info.id} of tenant {info.tenant} revoked")


@billing_app.command("report")
def billing_report(
    tenant: Annotated[str, typer.Option(help="Tenant to invoice.")],
    month: Annotated[str, typer.Option(help="Calendar month, YYYY-MM (UTC).")],
    format_: Annotated[str, typer.Option("--format", help="csv | json")] = "csv",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Invoice lines (per model, integer minor units) that reconcile exactly with the usage records."""
    from goldmine.serving.billing import invoice

    if format_ not in ("csv", "json"):
        _fail(GoldmineError(f"--format must be csv or json, got {format_!r}"))
    settings, db = _serving(config)
    try:
        result = invoice(db, settings, tenant, month)
    except GoldmineError as err:
        _fail(err)
    text = result.to_csv() if format_ == "csv" else json.dumps(result.to_dict(), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        console.print(f"invoice {tenant} {month}: {result.total_minor} {result.currency} (minor units) -> {output}")
    else:
        sys.stdout.write(text)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8000).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve registered models over HTTP: metered, authenticated, micro-batched (docs at /docs)."""
    from goldmine.serving.server import serve as run
    from goldmine.serving.settings import load_settings

    try:
        run(load_settings(config), host, port)
    except GoldmineError as err:
        _fail(err)


@app.command()
def worker(
    config: ConfigOpt = None,
    max_jobs: Annotated[int | None, typer.Option(help="Exit after this many queue messages (default: run until "
                                                 "interrupted).")] = None,
    parent_pid: Annotated[int | None, typer.Option(help="Stop when this process is gone (the local worker of "
                                                   "`goldmine serve`).")] = None,
) -> None:
    """Run fine-tuning jobs from the queue (jobs.queue_url: a SQLite file here, or Redis shared by many machines)."""
    import signal

    from goldmine.serving.worker import Worker

    def stop(signum, frame):  # SIGTERM (goldmine serve stopping, systemd, Kubernetes) as Ctrl-C
        raise KeyboardInterrupt

    settings, db = _serving(config)
    logging.getLogger("goldmine").setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):  # a running job goes back on the queue for the next worker
        Worker(settings, db).run(max_jobs=max_jobs, parent_pid=parent_pid)


def _job_line(job) -> str:
    total = job.total_steps if job.total_steps is not None else "?"
    return (f"{job.id}  {job.model}  {job.status}  step {job.step}/{total}  attempts {job.attempts}  "
            f"cpu {job.cpu_seconds:.1f}s  {job.created_at}")


@jobs_app.command("list")
def jobs_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
              config: ConfigOpt = None) -> None:
    """Jobs, newest first: id, model, status, step/total, attempts, CPU time."""
    from goldmine.serving.jobs import list_jobs

    _, db = _serving(config)
    for job in list_jobs(db, tenant):
        console.print(_job_line(job), highlight=False, markup=False)


@jobs_app.command("show")
def jobs_show(job_id: str, config: ConfigOpt = None) -> None:
    """One job as JSON (what GET /v1/jobs/{id} returns)."""
    from goldmine.serving.jobs import get_job

    _, db = _serving(config)
    try:
        console.print_json(json.dumps(get_job(db, None, job_id).to_dict()))
    except GoldmineError as err:
        _fail(err)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, config: ConfigOpt = None) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    from goldmine.serving.jobs import cancel_job

    _, db = _serving(config)
    try:
        console.print(_job_line(cancel_job(db, None, job_id)), highlight=False, markup=False)
    except GoldmineError as err:
        _fail(err)


# ---- the feedback loop: feedback, retrain, gate ------------------------------------------------------------------


@feedback_app.command("add")
def feedback_add(
    name: Annotated[str, typer.Argument(help="Model name.")],
    request_id: Annotated[str, typer.Argument(help="The request_id of the answered call.")],
    label: Annotated[str | None, typer.Option(help="The label the text should have had.")] = None,
    correct: Annotated[bool, typer.Option("--correct", help="The answer was right.")] = False,
    position: Annotated[int, typer.Option(help="Which text of the call (0: the first).")] = 0,
    text: Annotated[str | None, typer.Option(help="The item's text, kept (masked) for retraining if it matches.")]
    = None,
    config: ConfigOpt = None,
) -> None:
    """Give feedback on one answered item (as POST /v1/models/{name}/feedback does), then check the rollback."""
    from pydantic import ValidationError

    from goldmine.serving import autorollback
    from goldmine.serving.feedback import FeedbackIn, submit

    settings, db = _serving(config)
    try:
        body = FeedbackIn(request_id=request_id, position=position, label=label, correct=correct, text=text)
        info = submit(db, None, name, body, source="console")
        rolled = autorollback.check(db, settings, name, settings.default_alias)
    except ValidationError as err:
        _fail(GoldmineError("; ".join(e["msg"] for e in err.errors())))
    except GoldmineError as err:
        _fail(err)
    console.print(f"feedback {info.id}: {info.predicted} -> {info.label} ({'right' if info.correct else 'wrong'}, "
                  f"text {'kept' if info.text_kept else 'not kept'})", markup=False)
    if rolled is not None:
        err_console.print(f"[bold red]{escape(rolled.message())}[/]")


@feedback_app.command("show")
def feedback_show(name: Annotated[str, typer.Argument(help="Model name.")], config: ConfigOpt = None) -> None:
    """Per version that answered: feedback count, corrections, texts kept, accuracy from feedback."""
    from goldmine.serving.feedback import summary

    _, db = _serving(config)
    try:
        rows = summary(db, None, name)
    except GoldmineError as err:
        _fail(err)
    for row in rows:
        console.print(f"{row['version']}  {row['feedback']} feedback  {row['corrections']} corrections  "
                      f"accuracy {row['accuracy']:.3f}  {row['texts_kept']} texts kept", highlight=False)


@feedback_app.command("keep-texts")
def feedback_keep_texts(
    tenant: Annotated[str, typer.Argument(help="Tenant.")],
    keep: Annotated[bool, typer.Option("--on/--off", help="Keep the tenant's answered texts (masked).")],
    config: ConfigOpt = None,
) -> None:
    """Whether a tenant's answered texts are kept (masked) so its feedback can be trained on (default off)."""
    from goldmine.serving.feedback import set_keep_texts

    _, db = _serving(config)
    try:
        set_keep_texts(db, tenant, keep)
    except GoldmineError as err:
        _fail(err)
    console.print(f"tenant {tenant}: answered texts {'kept (masked)' if keep else 'not kept'}")


def _print_gate(report: dict) -> None:
    verdict = "[bold green]passed[/]" if report["passed"] else "[bold red]FAILED[/]"
    console.print(f"gate {report['model']}: candidate {report['candidate']} vs live {report['live']}: {verdict} "
                  f"(frozen set {report['eval_set']['sha256'][:12]}, {report['eval_set']['examples']} examples)")
    for check in report["checks"]:
        mark = "ok  " if check["passed"] else "FAIL"
        numbers = (f"candidate {check['candidate']:.4f}  live {check['live']:.4f}  needed {check['limit']}"
                   if check["candidate"] is not None else check.get("note") or "")
        console.print(f"  {mark} {check['name']}: {numbers}  (n={check['examples']})", markup=False,
                      highlight=False)


def _feedback_settings(settings, tolerance: float | None, auto_promote: bool | None):
    updates = {k: v for k, v in (("tolerance", tolerance), ("auto_promote", auto_promote)) if v is not None}
    settings.feedback = settings.feedback.model_copy(update=updates)
    return settings


@app.command()
def gate(
    name: Annotated[str, typer.Argument(help="Model name.")],
    candidate: Annotated[str, typer.Argument(help="Version id or alias to measure against the live version.")]
    = "candidate",
    show: Annotated[bool, typer.Option("--show", help="Print the latest stored report instead of running.")] = False,
    tolerance: Annotated[float | None, typer.Option(help="Overall accuracy/macro-F1 loss allowed "
                                                    "(default: feedback.tolerance).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the regression gate: CANDIDATE against the live version on the frozen evaluation set, per class, on the
    original training distribution, and on feedback it has not trained on. Exit 1 when it fails."""
    from goldmine.serving.gate import latest_report, run_gate

    settings, db = _serving(config)
    try:
        if show:
            report = latest_report(db, None, name)["report"]
        else:
            report = run_gate(db, _feedback_settings(settings, tolerance, None), name, candidate).to_dict()
    except GoldmineError as err:
        _fail(err)
    _print_gate(report)
    if not report["passed"]:
        raise typer.Exit(1)


@app.command()
def retrain(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    tolerance: Annotated[float | None, typer.Option(help="Gate: overall accuracy/macro-F1 loss allowed "
                                                    "(default: feedback.tolerance).")] = None,
    auto_promote: Annotated[bool | None, typer.Option("--auto-promote/--no-auto-promote", help="Promote when "
                                                      "the gate passes (default: feedback.auto_promote).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Change a field of the live version's training "
                                                   "config: --set training.max_steps=200")] = None,
    config: ConfigOpt = None,
) -> None:
    """Train the live version's data plus the feedback into a new `candidate` version, then run the gate."""
    from goldmine.serving.retrain import retrain as run
    from goldmine.training.progress import display_callbacks

    settings, db = _serving(config)
    overrides = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(GoldmineError(f"--set expects key=value, got {item!r}"))
        overrides[key.strip()] = value
    try:
        result = run(db, _feedback_settings(settings, tolerance, auto_promote), name, overrides=overrides,
                     callbacks=display_callbacks(console, raw_logs=_verbose(ctx)))
    except GoldmineError as err:
        _fail(err)
    console.print(result.merge.summary(), markup=False, highlight=False)
    console.print(f"{name} version {result.version} registered as candidate (trained from {result.parent})")
    if result.gate is not None:
        _print_gate(result.gate.to_dict())
    elif result.gate_error:
        err_console.print(f"gate not run: {escape(result.gate_error)}")
    if result.promoted:
        console.print(f"{name} {settings.default_alias}: {result.parent} -> {result.version} (passed the gate)")


if __name__ == "__main__":  # pragma: no cover
    app()


# ---- monitoring -------------------------------------------------------------------------------------------------

@drift_app.command("reference")
def drift_reference(
    model_dir: Annotated[Path, typer.Argument(help="Run directory of a classifier (`goldmine train`).")],
    data: Annotated[Path, typer.Argument(help="Its training data (any labeled format), or other in-distribution "
                                         "labeled texts.")],
) -> None:
    """Write the run's drift reference (drift_reference.npz) from DATA: for a run trained before goldmine wrote
    one at training time, or to compare live traffic with other data. Register the run again to serve it."""
    from goldmine.data.readers import ReadOptions, read_file
    from goldmine.monitoring.reference import write_reference

    try:
        path = write_reference(model_dir, read_file(data, ReadOptions()))
    except GoldmineError as err:
        _fail(err)
    if path is None:
        _fail(GoldmineError(f"{model_dir}: a drift reference is for classifiers of single texts (this model pools "
                            "no sentence embedding, or the data are text pairs)"))
    console.print(f"drift reference written to {path}")


@drift_app.command("report")
def drift_report(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    out: Annotated[Path, typer.Option(help="Directory for drift.png and drift.html.")] = Path("drift-report"),
    version: Annotated[str | None, typer.Option(help="Only this version id.")] = None,
    limit: Annotated[int, typer.Option(help="The last this many windows.")] = 500,
    config: ConfigOpt = None,
) -> None:
    """The model's monitoring windows over time (what `goldmine serve` measured): a table, a PNG and a page."""
    from rich.table import Table

    from goldmine.monitoring.report import windows, write_report

    settings, db = _serving(config)
    try:
        rows = windows(db, name, None, version, limit)
    except GoldmineError as err:
        _fail(err)
    table = Table("version", "closed (UTC)", "texts", "MMD p-value", "out-of-scope", "confidence", "alarm")
    for row in rows:
        r = row.report
        p_value = f"{r['mmd_p_value']:.4f}" if r.get("mmd_p_value") is not None else "-"
        confidence = f"{r['mean_confidence']:.3f}" if r.get("mean_confidence") is not None else "-"
        table.add_row(row.version, f"{row.ended_at:%Y-%m-%d %H:%M}", str(r["texts"]), p_value,
                      f"{r['out_of_scope_rate']:.3f}", confidence, "yes" if r.get("alarm") else "no")
    console.print(table)
    if not rows:
        console.print(f"{name} has no closed monitoring windows yet (a window closes after "
                      f"drift.window_texts = {settings.drift.window_texts} texts)")
        return
    written = write_report(rows, name, out, settings.drift.alarm_p_value)
    console.print(f"report written to {written['html']} and {written['png']}")
