"""The pooled sequence classifier: mean pooling, the three pooling modes, padding invariance, remote-code reload."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from goldmine.errors import ConfigError
from goldmine.modeling.backbone import load_tokenizer
from goldmine.modeling.pooled_classifier import PooledEncoderForSequenceClassification, mean_pool
from goldmine.tasks.sequence_classification import MultiLabelClassification, SequenceClassification

LABELS = ["cancel", "refund", "track"]
TEXTS = ["where is my order", "refund please", "hi , i want to cancel order 12345 that i placed on monday , thanks"]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0], [5.0, 6.0]]


def test_mean_pool_of_an_all_padding_row_is_zero_not_nan():
    pooled = mean_pool(torch.ones(1, 2, 3), torch.zeros(1, 2, dtype=torch.long))
    assert pooled.tolist() == [[0.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def build(tiny_model_dir, tokenizer, pooling: str, task_cls=SequenceClassification):
    torch.manual_seed(0)
    task = task_cls(LABELS, tokenizer)
    return task.build_model(str(tiny_model_dir), {"goldmine_pooling": pooling, "classifier_dropout": 0.1}).eval()


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_logits_shape_and_pooling_mode(tiny_model_dir, tokenizer, pooling):
    model = build(tiny_model_dir, tokenizer, pooling)
    assert isinstance(model, PooledEncoderForSequenceClassification)
    assert model.pooling == pooling and model.config.goldmine_pooling == pooling
    assert model.config.id2label == {0: "cancel", 1: "refund", 2: "track"}
    assert model.config.problem_type == "single_label_classification"
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
        out = model.backbone(**batch)
        pooled = model.pool(**batch)
        head = model.classifier(pooled)
    assert logits.shape == (3, 3)
    expected = {
        "mean": lambda: mean_pool(out.last_hidden_state, batch["attention_mask"]),
        "cls": lambda: out.last_hidden_state[:, 0],
        "pooler": lambda: out.pooler_output,
    }[pooling]()
    torch.testing.assert_close(pooled, expected)
    torch.testing.assert_close(logits, head)


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_padding_does_not_change_a_texts_logits(tiny_model_dir, tokenizer, pooling):
    model = build(tiny_model_dir, tokenizer, pooling)
    with torch.inference_mode():
        alone = torch.cat([model(**tokenizer([text], return_tensors="pt")).logits for text in TEXTS])
        padded_batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
        batched = model(**padded_batch).logits
    assert int(padded_batch["attention_mask"].sum()) < padded_batch["attention_mask"].numel()  # padding happened
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_forward_loss_matches_problem_type(tiny_model_dir, tokenizer):
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    single = build(tiny_model_dir, tokenizer, "mean")
    labels = torch.tensor([2, 1, 0])
    with torch.inference_mode():
        out = single(**batch, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))

    multi = build(tiny_model_dir, tokenizer, "mean", MultiLabelClassification)
    assert multi.config.problem_type == "multi_label_classification"
    targets = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 0, 0]])
    with torch.inference_mode():
        out = multi(**batch, labels=targets)
    torch.testing.assert_close(
        out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets.float())
    )


@pytest.mark.parametrize("pooling", ["mean", "pooler"])
def test_saved_model_loads_with_plain_transformers(tiny_model_dir, tokenizer, tmp_path, pooling):
    model = build(tiny_model_dir, tokenizer, pooling)
    PooledEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "pooled_classifier.py").is_file()

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    assert type(loaded).__name__ == "PooledEncoderForSequenceClassification"
    assert type(loaded) is not PooledEncoderForSequenceClassification  # the copy in the model directory
    assert loaded.pooling == pooling
    assert loaded.config.id2label == model.config.id2label
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, atol=0, rtol=0)


# An encoder without a pooler and without `add_pooling_layer` / `hidden_dropout_prob` (DistilBERT).


@pytest.fixture(scope="module")
def distilbert_dir(tmp_path_factory, tiny_model_dir, tokenizer):
    from transformers import DistilBertConfig, DistilBertModel

    directory = tmp_path_factory.mktemp("tiny-distilbert")
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_encoder_without_pooler_layer(distilbert_dir, tokenizer, tmp_path, pooling):
    task = SequenceClassification(LABELS, tokenizer)
    model = task.build_model(str(distilbert_dir), {"goldmine_pooling": pooling, "classifier_dropout": 0.25}).eval()
    assert model.config.model_type == "distilbert"
    assert (model.pooling, model.dropout.p) == (pooling, 0.25)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    batch.pop("token_type_ids")
    with torch.inference_mode():
        logits = model(**batch).logits
    assert logits.shape == (3, 3)

    PooledEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    assert (loaded.pooling, loaded.dropout.p) == (pooling, 0.25)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**batch).logits, logits, atol=0, rtol=0)


def test_pooler_pooling_needs_a_pooler_layer(distilbert_dir, tokenizer):
    task = SequenceClassification(LABELS, tokenizer)
    with pytest.raises(ConfigError, match="model.pooling: 'pooler' needs an encoder with a pooler layer"):
        task.build_model(str(distilbert_dir), {"goldmine_pooling": "pooler"})
