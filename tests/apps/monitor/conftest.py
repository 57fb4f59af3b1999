"""Monitor fixtures: a tiny sentiment model that has learned the synthetic headlines' words (seconds to train), its
registration as `fin-sentiment` of tenant `acme`, app configs, and a local webhook receiver that checks signatures."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from goldmine.apps.monitor import demo
from goldmine.serving.registry import register

SECRET = "monitor-test-secret-0123456789"


@pytest.fixture(scope="session")
def headline_files(tmp_path_factory):
    """The demo's synthetic stream (two malformed lines) and labeled headlines in both phrasings."""
    directory = tmp_path_factory.mktemp("headlines")
    return (demo.write_stream(directory / "stream.jsonl"),
            demo.write_labeled(directory / "labeled.jsonl", stream_phrasings=True))


@pytest.fixture(scope="session")
def sentiment_run(tmp_path_factory, headline_files):
    """A 2-layer, 32-wide BERT over the headlines' words, fine-tuned for 60 steps on the labeled headlines: it tells
    the synthetic stream's negative headlines from the others well enough for alerts to fire."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    import goldmine

    stream, labeled = headline_files
    words = set()
    for path in (stream, labeled):
        for line in path.read_text().splitlines():
            try:
                words.update(re.findall(r"\w+|[^\w\s]", json.loads(line)["text"].lower()))
            except (json.JSONDecodeError, KeyError):
                continue
    base = tmp_path_factory.mktemp("tiny-headline-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]
    (base / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(base / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(base)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(base)
    out = tmp_path_factory.mktemp("sentiment-run") / "run"
    goldmine.train(None, **{"task": "classification", "data.train": labeled, "model.name": str(base),
                            "output_dir": out, "model.max_length": 32, "training.max_steps": 60,
                            "training.batch_size": 16, "training.learning_rate": 5e-3,
                            "training.eval_strategy": "none", "training.linear_probe": False,
                            "training.head_init": "random", "training.ema_decay": None})
    return out


@pytest.fixture
def registered(db, settings, sentiment_run):
    """`fin-sentiment` of tenant acme (its first version: production)."""
    return register(db, settings.registry_dir, "fin-sentiment", sentiment_run, "acme")


RULES = [
    {"name": "negative-burst", "kind": "negative_share", "window": "1d", "threshold": 0.6, "min_items": 5},
    {"name": "sentiment-drop", "kind": "zscore", "window": "1d", "metric": "mean_score", "k": 2.0,
     "direction": "down", "baseline": 14, "min_baseline": 5, "min_items": 3},
]


@pytest.fixture
def write_config(tmp_path):
    """`write_config(**fields)`: a monitor app config file for tenant acme (the demo's companies and rules, a log
    sink) with `fields` replacing the defaults; returns its path."""

    def write(name: str = "monitor.yaml", **fields) -> Path:
        config = {"app": "monitor", "tenant": "acme",
                  "models": {"sentiment": {"name": "fin-sentiment", "version": "production"}},
                  "companies": {n: {"tickers": [t], "aliases": a} for n, (t, a) in demo.COMPANIES.items()},
                  "windows": ["1d"], "rules": RULES, "sinks": [{"type": "log"}], **fields}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


class Receiver:
    """A webhook receiver on loopback: records every delivery (alert id, body, whether its signature verified);
    answers `status` (settable: 503 plays a receiver that is down)."""

    def __init__(self, port: int = 0):
        from goldmine.apps.monitor.sinks import verify_signature

        self.deliveries: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.status == 200:
                    receiver.deliveries.append({"id": self.headers["X-Goldmine-Alert-Id"], "body": json.loads(body),
                                                "verified": verify_signature(SECRET.encode(), body, self.headers)})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def ids(self) -> list[str]:
        return [d["id"] for d in self.deliveries]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    handle = Receiver()
    yield handle
    handle.close()


def webhook(url: str, **extra) -> dict:
    return {"type": "webhook", "url": url, "secret": SECRET, **extra}


def negative_days(monitor, days: int, company: str = "Tailspin Air") -> list:
    """Store 5 negative items on each of `days` days (hand-written predictions): one negative-burst alert a day.
    Returns the alerts raised."""
    from datetime import datetime, timedelta

    from goldmine.apps.monitor.items import Item

    scores = {"negative": 0.9, "neutral": 0.05, "positive": 0.05}
    polarity = {k: k for k in scores}
    alerts = []
    for day in range(days):
        batch = [Item(f"{company}-{day}-{i}", datetime(2026, 3, 2) + timedelta(days=day, hours=i), f"{company} slump",
                      ("TAIL",)) for i in range(5)]
        analysed = monitor.analyse(batch, [{"label": "negative", "scores": scores}] * 5, polarity)
        alerts += monitor.store(analysed).alerts
    return alerts
