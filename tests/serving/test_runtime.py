"""The batch function a server runs: one tokenisation gives the predictions and the billed token counts."""

from __future__ import annotations

import pytest

from goldmine.inference.model import Model
from goldmine.serving.runtime import batch_function


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_batch_function_matches_predict_and_counts_tokens(tiny_run, task):
    model = Model.load(tiny_run(task), batch_size=2)
    texts = ["where is my parcel", "refund please", "a much longer text about an order that never arrived", "hi"]
    counts = [len(ids) for ids in model.task.tokenizer(texts, truncation=True, max_length=model.meta.max_length)
              ["input_ids"]]
    results = batch_function(model)(texts)
    assert [p for p, _ in results] == model.predict(texts)
    assert [n for _, n in results] == counts
