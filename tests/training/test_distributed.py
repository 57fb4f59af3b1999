"""`goldmine train` under torchrun: 2 CPU processes (DDP over gloo) on the tiny BERT, checked against the semantics
the README documents.

- `training.batch_size` is per process: an optimizer step consumes batch_size x processes x gradient_accumulation
  examples, so an epoch is ceil(n_train / that) steps.
- Every epoch each process trains on its own shard, and the shards together cover the training set.
- Dev predictions are gathered from both processes before metrics are computed: the dev metrics and loss equal
  those of the saved model measured in one process on the whole dev split.
- Only the main process writes the run directory and prints the summary.

One launch does all of this: the launched script records what each process trains on (a wrapped
`Trainer.training_step`), then runs the `goldmine` CLI exactly as `goldmine train` would.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from goldmine.config import load_config
from goldmine.data.splits import load_splits
from goldmine.inference.model import Model

PROCESSES, BATCH, ACCUMULATION, EPOCHS = 2, 16, 2, 2

RECORDING_CLI = textwrap.dedent(
    """
    import json, os, sys

    from transformers import Trainer

    from goldmine.cli import app

    seen = []  # [epoch, token ids without padding] for every example this process trains on
    step = Trainer.training_step


    def recording_step(self, model, inputs, *args, **kwargs):
        for ids, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist(), strict=True):
            seen.append([int(self.state.epoch), ids[: sum(mask)]])
        return step(self, model, inputs, *args, **kwargs)


    Trainer.training_step = recording_step
    try:
        app(sys.argv[2:], prog_name="goldmine")
    finally:
        with open(sys.argv[1].format(rank=os.environ["RANK"]), "w") as f:
            json.dump(seen, f)
    """
)


@pytest.fixture(scope="module")
def distributed_run(tiny_model_dir, demo_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    settings = {
        "task": "classification", "data.train": str(demo_files.intents), "model.name": str(tiny_model_dir),
        "output_dir": str(root / "run"), "training.epochs": EPOCHS, "training.batch_size": BATCH,
        "training.gradient_accumulation": ACCUMULATION, "training.eval_strategy": "epoch",
        "training.eval_batch_size": 8,  # several dev batches, so each process evaluates a different part of dev
        "training.linear_probe": False, "training.logging_steps": 1,
    }
    script = root / "recording_cli.py"
    script.write_text(RECORDING_CLI)
    seen = root / "seen-rank{rank}.json"
    # --standalone: a rendezvous on localhost with a free port, and MASTER_ADDR/MASTER_PORT set for the workers
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={PROCESSES}",
               str(script), str(seen), "train", *(f"--set={k}={v}" for k, v in settings.items())]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ranks = [json.loads(Path(str(seen).format(rank=r)).read_text()) for r in range(PROCESSES)]
    return load_config(None, settings), proc, ranks


def test_steps_follow_the_global_batch(distributed_run):
    config, _, _ = distributed_run
    n_train = len(load_splits(config.data)["train"])
    per_epoch = math.ceil(n_train / (BATCH * PROCESSES * ACCUMULATION))
    assert per_epoch != math.ceil(n_train / (BATCH * ACCUMULATION))  # one process would take more steps
    meta = json.loads((config.output_dir / "goldmine.json").read_text())
    assert meta["extra"]["global_step"] == per_epoch * EPOCHS
    evals = [e for e in json.loads((config.output_dir / "log_history.json").read_text()) if "eval_loss" in e]
    assert [e["step"] for e in evals] == [per_epoch * (i + 1) for i in range(EPOCHS)]
    checkpoints = {p.name for p in (config.output_dir / "checkpoints").iterdir()}
    assert checkpoints == {f"checkpoint-{per_epoch * (i + 1)}" for i in range(EPOCHS)}


def test_each_process_trains_on_its_own_shard(distributed_run, tiny_model_dir):
    config, _, ranks = distributed_run
    train = load_splits(config.data)["train"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    everything = {tuple(ids) for ids in tokenizer([ex.text for ex in train.examples], truncation=True,
                                                   max_length=config.model.max_length)["input_ids"]}
    for epoch in range(EPOCHS):
        shards = [Counter(tuple(ids) for e, ids in seen if e == epoch) for seen in ranks]
        assert shards[0].total() == shards[1].total() > 0  # the same number of batches on both
        assert set(shards[0]) | set(shards[1]) == everything, f"epoch {epoch}: an example was left out"
        padding = shards[0].total() + shards[1].total() - len(train)  # the last global batch may be filled up
        assert 0 <= padding < BATCH * PROCESSES
        assert (shards[0] & shards[1]).total() <= padding, f"epoch {epoch}: the processes' shards overlap"


def test_dev_metrics_are_gathered_from_all_processes(distributed_run):
    config, _, _ = distributed_run
    out = config.output_dir
    final = json.loads((out / "checkpoints" / f"checkpoint-{_last_step(out)}" / "trainer_state.json").read_text())
    best = next(e for e in final["log_history"] if e.get("step") == final["best_global_step"] and "eval_loss" in e)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_dev"] == best["eval_accuracy"]

    # the saved (best) model, measured in this process on the whole dev split
    model = Model.load(out)
    dev = load_splits(config.data)["dev"]
    features = model.task.encode(dev).features
    labels = np.asarray([f["labels"] for f in features])
    probs = np.zeros((len(features), model.task.num_labels))
    for idx, p in model.iter_probabilities(features):
        probs[idx] = p
    assert best["eval_accuracy"] == pytest.approx(float((probs.argmax(-1) == labels).mean()), abs=1e-12)
    # A mean, not multiplied by the process count. Not exact: the Trainer repeats each batch's mean loss per
    # example, and the last global batch is filled up with repeated examples.
    nll = -np.log(probs[np.arange(len(labels)), labels]).mean()
    assert best["eval_loss"] == pytest.approx(nll, rel=0.01)


def test_only_the_main_process_writes(distributed_run):
    config, proc, _ = distributed_run
    out = config.output_dir
    assert proc.stdout.count("model saved to") == 1
    assert len(list((out / "logs").glob("events.out.tfevents.*"))) == 1
    for name in ("metrics.json", "before_after.md", "goldmine.json", "config.yaml", "data_report.json"):
        assert (out / name).is_file(), name
    assert load_config(out / "config.yaml") == config
    model = Model.load(out)
    predictions = model.predict(["where is my order 48213?", "my card was stolen"])
    assert all(p["label"] in model.labels and 0 < p["score"] <= 1 for p in predictions)


def _last_step(out: Path) -> int:
    return max(int(p.name.removeprefix("checkpoint-")) for p in (out / "checkpoints").iterdir())
