"""A tiny random encoder saved as a retrieval run, a five-entry FAQ indexed with it, and a stand-in NER model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

FAQ = [
    {"id": "flu", "question": "when should i get the flu shot", "answer": "Every autumn, before flu season.",
     "url": "https://faq.example.org/flu", "focus": "influenza vaccine"},
    {"id": "fever", "question": "when should i call about my child fever", "answer": "Call for a fever over 40 C.",
     "url": "https://faq.example.org/fever", "focus": "fever"},
    {"id": "parkinson", "question": "is parkinson disease inherited", "answer": "Most cases are not inherited.",
     "url": "https://faq.example.org/parkinson", "focus": "Parkinson's disease"},
    {"id": "sprain", "question": "how do i treat a sprained ankle", "answer": "Rest, ice, compression, elevation.",
     "url": "https://faq.example.org/sprain", "focus": "ankle sprain"},
    {"id": "records", "question": "how can i get my medical records", "answer": "Use the records form.",
     "focus": "medical records"},  # no url: the reply's url is None
]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny random BERT as an untrained goldmine retrieval run (no match threshold)."""
    from goldmine.apps.medfaq.encoder import save_pretrained_encoder

    return save_pretrained_encoder(tmp_path_factory.mktemp("medfaq") / "encoder", str(tiny_model_dir), 64)


@pytest.fixture(scope="session")
def faq_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faq") / "faq.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in FAQ))
    return path


@pytest.fixture(scope="session")
def faq_index_dir(tiny_encoder, faq_file) -> Path:
    from goldmine.apps.medfaq import build_index

    return build_index(tiny_encoder, faq_file).directory


class StubNer:
    """Answers like a goldmine NER `Model.predict`: each known (type, surface) found in a text is an entity."""

    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    meta = SimpleNamespace(task="ner")

    def __init__(self, known: list[tuple[str, str]]):
        self.known = known
        self.calls = 0

    def predict(self, texts):
        self.calls += 1
        found = []
        for text in texts:
            entities = []
            for kind, surface in self.known:
                start = text.find(surface)
                if start >= 0:
                    entities.append({"type": kind, "text": surface, "start": start, "end": start + len(surface),
                                     "score": 0.9})
            found.append({"entities": entities})
        return found


@pytest.fixture
def stub_ner():
    return StubNer
