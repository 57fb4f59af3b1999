"""NER case types end to end: trained, saved as a plain BERT, read by predict, eval and the ONNX graph alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import goldmine
from goldmine.config import load_config
from goldmine.errors import ConfigError
from goldmine.inference.model import Model, RunMeta

TEXTS = ["Anna Schmidt from Berlin ordered a Pixel 8", "anna schmidt from berlin ordered a pixel 8",
         "ANNA SCHMIDT FROM BERLIN ORDERED A PIXEL 8"]


def _ner_run(out, demo_files, tiny_model_dir, **overrides):
    goldmine.train(None, **{
        "task": "ner", "data.train": demo_files.ner, "model.name": str(tiny_model_dir), "output_dir": out,
        "training.max_steps": 6, "training.batch_size": 16, "training.learning_rate": 5e-3,
        "training.eval_strategy": "none", "training.linear_probe": False, **overrides,
    })
    return out


@pytest.fixture(scope="module")
def cased_run(tmp_path_factory, demo_files, tiny_model_dir):
    """Case types by default: the tiny model's tokenizer lower-cases, as the bundled MiniLM's does."""
    return _ner_run(tmp_path_factory.mktemp("cased") / "run", demo_files, tiny_model_dir)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, demo_files, tiny_model_dir):
    return _ner_run(tmp_path_factory.mktemp("plain") / "run", demo_files, tiny_model_dir,
                    **{"data.case_features": False})


def _word_logits(model: Model, texts: list[str], case_types_of_text) -> list[np.ndarray]:
    tok = model.task.tokenizer
    enc = tok(texts, return_offsets_mapping=True)
    features = []
    for i, text in enumerate(texts):
        feature = {k: enc[k][i] for k in ("input_ids", "attention_mask")}
        feature["token_type_ids"] = case_types_of_text(model.task, text, enc.word_ids(i), enc["offset_mapping"][i])
        features.append(feature)
    out: list[np.ndarray] = [np.empty(0)] * len(texts)
    for idx, logits in model.iter_logits(features):
        for i, row in zip(idx, logits, strict=True):
            out[i] = row[: len(features[i]["input_ids"])]
    return out


def test_the_run_records_case_types_and_loads_as_a_plain_bert(cased_run):
    from transformers import AutoModelForTokenClassification

    assert RunMeta.load(cased_run).case_features is True
    plain = AutoModelForTokenClassification.from_pretrained(cased_run)
    assert plain.config.type_vocab_size == 5
    table = plain.bert.embeddings.token_type_embeddings.weight
    assert not torch.equal(table[2], table[0])  # the Title row learned something of its own


def test_predict_reads_the_original_spelling(cased_run, plain_run, case_types_of_text):
    model = Model.load(cased_run, runtime="torch")
    title, lower, upper = _word_logits(model, TEXTS, case_types_of_text)
    assert title.shape == lower.shape == upper.shape
    assert not np.allclose(title, lower) and not np.allclose(upper, lower)
    # a model without case types reads the three spellings alike: the uncased tokenizer lower-cases them all
    plain = Model.load(plain_run, runtime="torch")
    assert RunMeta.load(plain_run).case_features is False
    enc = plain.task.tokenizer(TEXTS)
    features = [{k: enc[k][i] for k in enc} for i in range(3)]
    rows = {int(i): logits for idx, batch in plain.iter_logits(features) for i, logits in zip(idx, batch, strict=True)}
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-5)
    # predict (and so the server) builds the same types from the text it is given
    seen: list[dict] = []
    original = model.iter_probabilities
    model.iter_probabilities = lambda features: (seen.extend(features), original(features))[1]
    model.predict(TEXTS[:1])
    enc = model.task.tokenizer(TEXTS[:1], return_offsets_mapping=True)
    assert seen[0]["token_type_ids"] == case_types_of_text(model.task, TEXTS[0], enc.word_ids(0),
                                                           enc["offset_mapping"][0])
    assert set(seen[0]["token_type_ids"]) == {0, 2}  # Title words and the rest (lower, digits, specials)


def test_onnx_export_keeps_the_case_types(cased_run, case_types_of_text):
    from goldmine.export import export_model

    export_model(cased_run, force=True, threads=1)  # the last test of the module to use the run: it may change it
    torch_model, onnx_model = Model.load(cased_run, runtime="torch"), Model.load(cased_run, runtime="onnx")
    for a, b in zip(_word_logits(torch_model, TEXTS, case_types_of_text),
                    _word_logits(onnx_model, TEXTS, case_types_of_text), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    spans = [[(e["type"], e["start"], e["end"]) for e in p["entities"]] for p in torch_model.predict(TEXTS)]
    assert spans == [[(e["type"], e["start"], e["end"]) for e in p["entities"]] for p in onnx_model.predict(TEXTS)]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"task": "classification"}, "data.case_features is for task ner"),
    ({"tuning.strategy": "lora"}, "needs tuning.strategy full or freeze"),
])
def test_case_types_refused_where_they_cannot_work(overrides, message):
    """The task rule is the config's own; LoRA's is the tuning method's, checked before training loads anything."""
    from goldmine.training.trainer import check_config

    with pytest.raises(ConfigError, match=message):
        check_config(load_config(None, {"task": "ner", "data.case_features": True, **overrides}))


def test_case_types_pay_off_with_an_uncased_tokenizer_and_a_token_type_table(tmp_path, tiny_model_dir):
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    from goldmine.tasks.token_classification import case_types_pay_off

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "A"])}
    uncased = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    cased = BertTokenizerFast(vocab=vocab, do_lower_case=False)
    assert case_types_pay_off(uncased, str(tiny_model_dir))
    assert not case_types_pay_off(cased, str(tiny_model_dir))
    DistilBertModel(DistilBertConfig(vocab_size=7, dim=16, n_layers=1, n_heads=2, hidden_dim=32)).save_pretrained(
        tmp_path)
    assert not case_types_pay_off(uncased, str(tmp_path))  # no token-type table to carry them


def test_lora_runs_leave_case_types_off_by_default(tmp_path, demo_files, tiny_model_dir):
    out = _ner_run(tmp_path / "lora", demo_files, tiny_model_dir, **{"tuning.strategy": "lora",
                                                                     "training.max_steps": 1})
    assert RunMeta.load(out).case_features is False
