"""A pretrained encoder (the bundled all-MiniLM-L6-v2 by default) saved as it is, untrained, as a goldmine
`task: retrieval` run: what the FAQ searches with before anyone fine-tunes one, and the "before" of a benchmark.

The run directory is the one a trained retrieval run writes (goldmine's pooled encoder: mean pooling, unit-length
embeddings), so `Index.build`, `Model.load`, export and serving read it unchanged. It has no match threshold (nothing
was fitted): a `MedFaq` on it needs a numeric `threshold`.
"""

from __future__ import annotations

from pathlib import Path


def save_pretrained_encoder(out: str | Path, base_model: str = "bundled", max_length: int = 128) -> Path:
    """Write `base_model` (bundled, a directory or a hub name) to `out` as a goldmine retrieval run; returns `out`."""
    from goldmine.config import load_config
    from goldmine.inference.model import RunMeta
    from goldmine.modeling.backbone import load_tokenizer, resolve_base_model
    from goldmine.registry import STRATEGIES
    from goldmine.tasks.retrieval import SIMILARITY, Retrieval
    from goldmine.training.artifacts import save_model, versions
    from goldmine.training.retrieval import pooled_network, sentence_encoder

    out = Path(out)
    config = load_config(None, {"task": "retrieval", "output_dir": str(out), "model.name": base_model,
                                "model.max_length": max_length})
    base = resolve_base_model(base_model)
    tokenizer = load_tokenizer(base)
    network = pooled_network(Retrieval([SIMILARITY], tokenizer, max_length), base, sentence_encoder(base, max_length))
    meta = RunMeta(task=Retrieval.name, label_names=[SIMILARITY], base_model=base_model, strategy="full",
                   pooling="mean", max_length=max_length,
                   extra={"versions": versions(), "train_seconds": 0.0, "global_step": 0, "pretrained": True,
                          "retrieval": {"positive_label": None, "hard_negatives": None, "match_threshold": None}})
    save_model(network, tokenizer, meta, config, out, STRATEGIES.get("full")())
    return out
