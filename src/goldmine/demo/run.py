"""`goldmine demo`: the whole path on data the project writes itself, in a few minutes on 2 CPU cores."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from goldmine.config import load_config
from goldmine.demo.datasets import write_demo_chats, write_demo_data
from goldmine.evaluation.comparison import as_table
from goldmine.inference.model import Model
from goldmine.training.progress import display_callbacks
from goldmine.training.trainer import train

SAMPLE_REQUESTS = [
    "hi, my parcel still hasn't shown up, where is it?",
    "I want my money back for the broken headphones",
    "please cancel order 48213 before it ships",
    "my card was stolen yesterday, block it now",
    "I don't need a refund, I just want to know where my parcel is",
    "please change my email address to ana.silva@example.com, not my home address",
    "my card isn't lost, it just keeps getting declined when I pay",
]
SAMPLE_TICKETS = [
    "Hello, this is Maria Lopez from Madrid, my Galaxy Buds Pro from Amazon stopped working.",
    "Could someone at DHL in Berlin check on the parcel for Tom Becker?",
    "jordan says the nintendo switch from target never arrived in austin",
    "Paris Okafor flew to Jordan on Monday and left her Kindle at the hotel.",
]


def run_demo(output_dir: Path, console: Console, quick: bool = False, verbose: bool = False) -> dict:
    """Train the intent classifier and the NER tagger; print tables and sample predictions.

    Training shows goldmine's progress display on `console`; `verbose` adds transformers' raw log dicts.
    """
    files = write_demo_data(output_dir / "data")
    console.rule("[bold]goldmine demo")
    console.print(f"demo data written: {files.intents} and {files.ner}")
    quick_steps = {"training.max_steps": 4, "training.eval_strategy": "none", "training.linear_probe": False}
    steps = quick_steps if quick else {}
    jobs = {
        "intents": {"task": "classification", "data.train": str(files.intents), "training.epochs": 3,
                    "training.batch_size": 16, "training.learning_rate": 1e-4},
        # NER at batch 8: at 16, five epochs were too few optimizer steps (dev F1 still rising, below the probe)
        "entities": {"task": "ner", "data.train": str(files.ner), "training.epochs": 5,
                     "training.batch_size": 8, "training.learning_rate": 1e-4},
    }
    results = {}
    for name, overrides in jobs.items():
        console.rule(f"[bold]{name}: fine-tuning all-MiniLM-L6-v2 ({overrides['task']})")
        config = load_config(None, {**overrides, **steps, "output_dir": str(output_dir / name)})
        result = train(config, callbacks=display_callbacks(console, raw_logs=verbose))
        console.print(as_table(result.before_after, f"{name}: before vs after fine-tuning (held-out test split)"))
        console.print(f"saved to {result.output_dir} in {result.train_seconds:.0f}s of training")
        results[name] = result
    console.rule("[bold]predictions")
    intents = Model.load(results["intents"].output_dir)
    for text, out in zip(SAMPLE_REQUESTS, intents.predict(SAMPLE_REQUESTS), strict=True):
        console.print(f"{text!r} -> [bold]{out['label']}[/] ({out['score']:.2f})")
    tagger = Model.load(results["entities"].output_dir)
    for text, out in zip(SAMPLE_TICKETS, tagger.predict(SAMPLE_TICKETS), strict=True):
        found = ", ".join(f"{e['type']}:{e['text']!r}@{e['start']}" for e in out["entities"]) or "none"
        console.print(f"{text!r}\n   -> {found}")
    return results


SAMPLE_CHATS = ["Hi, where is my order #55120?", "I lost my card. Thanks!", "please cancel order GM-31337"]


def run_generation_demo(output_dir: Path, console: Console, quick: bool = False, verbose: bool = False,
                        model: str = "bundled"):
    """LoRA-tune the bundled SmolLM2-135M-Instruct (or `model`) on support chats the project writes; before vs
    after on held-out chats (loss, perplexity, ROUGE-L, exact match) and replies to new messages."""
    chats = write_demo_chats(output_dir / "data")
    console.rule("[bold]replies: LoRA-tuning SmolLM2-135M-Instruct (causal_lm)")
    console.print(f"demo chats written: {chats}")
    steps = {"training.max_steps": 2} if quick else {"training.max_steps": 80}
    config = load_config(None, {"task": "causal_lm", "data.train": str(chats), "tuning.strategy": "lora",
                                "model.max_length": 128, "training.batch_size": 8, "training.learning_rate": 1e-3,
                                "training.eval_strategy": "none", "training.linear_probe": False,
                                "model.name": model, "output_dir": str(output_dir / "replies"), **steps})
    result = train(config, callbacks=display_callbacks(console, raw_logs=verbose))
    console.print(as_table(result.before_after, "replies: before vs after fine-tuning (held-out chats)"))
    writer = Model.load(result.output_dir)
    for text, out in zip(SAMPLE_CHATS, writer.predict(SAMPLE_CHATS), strict=True):
        console.print(f"{text!r}\n   -> {out['text']!r}")
    return result
