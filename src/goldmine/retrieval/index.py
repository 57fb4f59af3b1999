"""Search a corpus (FAQ entries, documents) by meaning, with a goldmine encoder's sentence embeddings.

`Index.build(model_dir, "faq.jsonl", name="faq")` embeds each entry's text (any other fields are kept as its
payload and returned with it) and stores the index next to the model, in `<model_dir>/indexes/<name>/`:

    index.json      what the index is: its name, version (bumped by every add/delete), the digest of the model
                    files it was embedded with, the text and id fields, the search backend, the count
    entries.jsonl   the entries in index order: id, text, payload
    vectors.npy     their unit-length embeddings (float32), so entries can be added or deleted without
                    embedding the others again
    faiss.index     the FAISS structure, for corpora past FAISS_FROM entries

Search is a dot product of unit vectors (cosine similarity): exact with numpy for small corpora, FAISS (an IVF
index: approximate, with exact add and remove) from `FAISS_FROM` entries on, where exact search of one query passes
10 ms on this machine (bench/results/retrieval.md). Queries must be embedded by
the same model: an index is tied to the digest of its model's files, and a search or update through any other
model is refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.data.readers import decoded_text, jsonl_records
from goldmine.errors import DataError, DataIssue, GoldmineError, InputError

INDEX_FILE, ENTRIES_FILE, VECTORS_FILE, FAISS_FILE = "index.json", "entries.jsonl", "vectors.npy", "faiss.index"
INDEXES_DIR = "indexes"  # inside a run directory; the serving registry leaves it out of the model's version
FAISS_FROM = 200_000  # entries: where exact search of one query passes 10 ms (bench/results/retrieval.md)
MAX_QUERY_CHARS = 10_000
MAX_K = 1000
MODEL_FILES = ("config.json", "tokenizer.json", "vocab.txt", "goldmine.json")


class IndexUnusable(GoldmineError):
    """An index that cannot be used as asked (another model, a missing or damaged index)."""


@dataclass(frozen=True)
class Entry:
    id: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    score: float  # cosine similarity of the query and the entry
    payload: dict[str, Any]
    rerank_score: float | None = None  # the cross-encoder's probability that the pair matches, when re-ranked


def model_digest(model_dir: str | Path) -> str:
    """sha256 over the files that decide a model's embeddings: its weights and configuration."""
    directory = Path(model_dir)
    files = sorted(p for p in directory.iterdir() if p.is_file() and (p.suffix == ".safetensors" or
                                                                     p.name in MODEL_FILES))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def read_corpus(path: str | Path, text_field: str = "question", id_field: str = "id") -> list[Entry]:
    """A corpus file (JSONL, or CSV/TSV with a header) as entries; every bad line in one `DataError`: no text,
    a duplicate id (both lines named), unreadable JSON, an empty file."""
    path = Path(path)
    if not path.is_file():
        raise DataError([DataIssue(str(path), 0, "file not found")], header="cannot read the corpus")
    issues: list[DataIssue] = []
    records: list[tuple[int, dict]] = []
    content = decoded_text(path, "cannot read the corpus")
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(content.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        records = [(number, dict(row)) for number, row in enumerate(reader, start=2)]
    else:
        records = jsonl_records(path, issues, content.splitlines())
    entries, first_line = [], {}
    for number, record in records:
        text = record.get(text_field)
        if not isinstance(text, str) or not text.strip():
            issues.append(DataIssue(str(path), number, f"no text in field {text_field!r}"))
            continue
        entry_id = str(record[id_field]) if record.get(id_field) not in (None, "") else str(number)
        if entry_id in first_line:
            issues.append(DataIssue(str(path), number, f"id {entry_id!r} already used on line "
                                                       f"{first_line[entry_id]}"))
            continue
        first_line[entry_id] = number
        payload = {k: v for k, v in record.items() if k not in (text_field, id_field)}
        entries.append(Entry(entry_id, text, payload))
    if issues:
        raise DataError(sorted(issues, key=lambda i: i.line), header=f"{path}: corpus entries that cannot be indexed")
    if not entries:
        raise DataError([DataIssue(str(path), 1, "the corpus is empty")], header="cannot build an index")
    return entries


class Index:
    """A searchable corpus tied to the model that embedded it. Build, load, search, add, delete."""

    def __init__(self, directory: Path, meta: dict, entries: list[Entry], vectors: np.ndarray):
        self.directory, self.meta, self.entries, self.vectors = Path(directory), meta, entries, vectors
        self._faiss = None

    # ---- making and opening ----
    @classmethod
    def build(cls, model_dir: str | Path, corpus: str | Path | list[Entry], name: str,
              out: str | Path | None = None, text_field: str = "question", id_field: str = "id",
              model=None) -> Index:
        """Embed `corpus` (a file or entries) with the model of `model_dir` and save the index (by default in
        `<model_dir>/indexes/<name>/`)."""
        from goldmine.serving.registry import check_name

        check_name(name)
        entries = corpus if isinstance(corpus, list) else read_corpus(corpus, text_field, id_field)
        model = model or _load_model(model_dir)
        directory = Path(out) if out else Path(model_dir) / INDEXES_DIR / name
        meta = {"name": name, "version": 1, "model_digest": model_digest(model_dir), "model_dir": str(model_dir),
                "text_field": text_field, "id_field": id_field, "dimension": None, "count": 0}
        index = cls(directory, meta, [], np.zeros((0, 0), dtype=np.float32))
        index._append(entries, model)
        index.meta["version"] = 1
        index.save()
        return index

    @classmethod
    def load(cls, directory: str | Path) -> Index:
        directory = Path(directory)
        if not (directory / INDEX_FILE).is_file():
            raise IndexUnusable(f"{directory} is not a goldmine index (no {INDEX_FILE})")
        meta = json.loads((directory / INDEX_FILE).read_text())
        entries = [Entry(**json.loads(line)) for line in (directory / ENTRIES_FILE).read_text().splitlines()]
        vectors = np.load(directory / VECTORS_FILE)
        if len(entries) != meta["count"] or len(vectors) != meta["count"]:
            raise IndexUnusable(f"{directory}: damaged index ({meta['count']} entries recorded, {len(entries)} "
                              f"entries and {len(vectors)} vectors on disk)")
        return cls(directory, meta, entries, vectors)

    def save(self) -> None:
        """Write every file through a temporary name and rename it, index.json last: a reader sees the old index
        or the new one, and `load` refuses a mix."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meta["count"] = len(self.entries)
        self.meta["backend"] = "faiss" if len(self.entries) >= FAISS_FROM else "numpy"
        _atomic(self.directory / ENTRIES_FILE, "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n"
                                                       for e in self.entries).encode())
        with open(self.directory / (VECTORS_FILE + ".tmp"), "wb") as fh:
            np.save(fh, self.vectors)
        os.replace(self.directory / (VECTORS_FILE + ".tmp"), self.directory / VECTORS_FILE)
        if self.meta["backend"] == "faiss":
            import faiss

            faiss.write_index(self._faiss_index(), str(self.directory / (FAISS_FILE + ".tmp")))
            os.replace(self.directory / (FAISS_FILE + ".tmp"), self.directory / FAISS_FILE)
        _atomic(self.directory / INDEX_FILE, json.dumps(self.meta, indent=2).encode())

    # ---- using ----
    def check_model(self, model_dir: str | Path) -> None:
        digest = model_digest(model_dir)
        if digest != self.meta["model_digest"]:
            raise IndexUnusable(f"index {self.meta['name']!r} was built with another model (digest "
                              f"{self.meta['model_digest']}, this one {digest}): its vectors and this model's "
                              "queries are not comparable; rebuild the index with this model")

    def search(self, queries: list[str], k: int = 5, model=None, min_score: float | None = None,
               features: list[dict] | None = None) -> list[list[Hit]]:
        """The `k` nearest entries of each query (cosine similarity, best first), those below `min_score` left
        out. `model`: the loaded model (default: the one the index was built with, checked by digest);
        `features`: the queries already tokenised by it (`Model.features`), so a caller that counts their tokens
        does not tokenise twice."""
        if not 1 <= k <= MAX_K:
            raise InputError(f"k: give 1 to {MAX_K}, got {k}")
        if not queries:
            return []
        for i, query in enumerate(queries):
            if not query.strip():
                raise InputError(f"query {i} is empty")
            if len(query) > MAX_QUERY_CHARS:
                raise InputError(f"query {i} has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if model is None:
            self.check_model(self.meta["model_dir"])
            model = _load_model(self.meta["model_dir"])
        elif getattr(model, "directory", None) is not None:
            self.check_model(model.directory)
        q = model.embed_features(features) if features is not None else model.embed(queries)
        return self.search_vectors(q, k, min_score)

    def search_vectors(self, vectors: np.ndarray, k: int = 5, min_score: float | None = None) -> list[list[Hit]]:
        """`search` for queries already embedded by the index's model (N, dimension): what a caller that builds
        its query vector itself searches with, e.g. a recommender's mean of the vectors of a user's items.
        The vectors are scaled to unit length here."""
        if not 1 <= k <= MAX_K:
            raise InputError(f"k: give 1 to {MAX_K}, got {k}")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or (len(self.entries) and vectors.shape[1] != self.vectors.shape[1]):
            raise InputError(f"query vectors: expected shape (N, {self.meta['dimension']}), got {vectors.shape}")
        if not len(vectors) or not self.entries:
            return [[] for _ in range(len(vectors))]
        q = _unit(vectors)
        k = min(k, len(self.entries))
        if self.meta.get("backend") == "faiss":
            scores, rows = self._faiss_index().search(q, k)
        else:
            similarity = q @ self.vectors.T
            rows = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(similarity, rows, axis=1)
        return [[Hit(self.entries[r].id, self.entries[r].text, round(float(s), 6), self.entries[r].payload)
                 for r, s in zip(row, score, strict=True) if r >= 0 and (min_score is None or s >= min_score)]
                for row, score in zip(rows, scores, strict=True)]

    def search_and_rerank(self, queries: list[str], reranker, k: int = 5, candidates: int = 20,
                          match_label: str | None = None, model=None, min_score: float | None = None,
                          features: list[dict] | None = None, tokens: list[int] | None = None) -> list[list[Hit]]:
        """`search` for `candidates` entries per query, re-ordered by a cross-encoder (a goldmine pair
        classification model: `reranker`, loaded) by its probability of `match_label` for (query, entry text),
        the best `k` kept. A cross-encoder reads both texts together, so it ranks more precisely than cosine
        similarity, at a forward pass per candidate. `match_label` defaults to the last of the model's labels (as
        "1" of 0/1 or "same" of different/same sort). `min_score` and `features` as `search`; `tokens`, when
        given, is extended with the input tokens of each pair the cross-encoder read."""
        if not reranker.meta.pair:
            raise InputError("a re-ranker is a model trained on text pairs (a cross-encoder); this one reads "
                             "single texts")
        label = match_label if match_label is not None else reranker.labels[-1]
        if label not in reranker.labels:
            raise InputError(f"match_label {label!r} is not one of the re-ranker's labels {reranker.labels}")
        found = self.search(queries, max(k, candidates), model=model, min_score=min_score, features=features)
        ranked = []
        for query, hits in zip(queries, found, strict=True):
            counted = reranker.predict_counted([query] * len(hits), [h.text for h in hits]) if hits else []
            answers = [answer for answer, _ in counted]
            if tokens is not None:  # what the cross-encoder read, per pair (a server bills it)
                tokens.extend(n for _, n in counted)
            scored = [Hit(h.id, h.text, h.score, h.payload, round(float(a["scores"][label]), 6))
                      for h, a in zip(hits, answers, strict=True)]
            ranked.append(sorted(scored, key=lambda h: -h.rerank_score)[:k])
        return ranked

    def add(self, entries: list[Entry], model=None) -> None:
        """Embed and append `entries` (ids must be new); the others keep their vectors."""
        self.check_model(self.meta["model_dir"])
        self._append(entries, model or _load_model(self.meta["model_dir"]))
        self.meta["version"] += 1
        self.save()

    def delete(self, ids: list[str]) -> None:
        """Remove the entries with these ids (each must exist)."""
        known = {e.id for e in self.entries}
        if missing := sorted(set(ids) - known):
            raise InputError(f"no entries with ids {missing[:10]} in index {self.meta['name']!r}")
        gone = set(ids)
        keep = [i for i, e in enumerate(self.entries) if e.id not in gone]
        self.entries = [self.entries[i] for i in keep]
        self.vectors = self.vectors[keep]
        self._faiss = None
        self.meta["version"] += 1
        self.save()

    # ---- internals ----
    def _append(self, entries: list[Entry], model) -> None:
        known = {e.id for e in self.entries}
        seen: set[str] = set()
        if clashes := sorted({e.id for e in entries if e.id in known or (e.id in seen or seen.add(e.id))}):
            raise InputError(f"ids already in index {self.meta['name']!r} or given twice: {clashes[:10]}")
        if not entries:
            raise InputError("no entries to add")
        vectors = _unit(model.embed([e.text for e in entries])).astype(np.float32)
        self.vectors = vectors if not len(self.entries) else np.concatenate([self.vectors, vectors])
        self.entries = [*self.entries, *entries]
        self.meta["dimension"] = int(self.vectors.shape[1])
        self._faiss = None

    def _faiss_index(self):
        """An IVF index over the vectors (inner product on unit vectors = cosine), built on first use."""
        if self._faiss is None:
            import faiss

            path = self.directory / FAISS_FILE
            if path.is_file() and (self.directory / INDEX_FILE).is_file() and \
                    json.loads((self.directory / INDEX_FILE).read_text())["version"] == self.meta["version"]:
                self._faiss = faiss.read_index(str(path))
            else:
                lists = max(1, int(4 * np.sqrt(len(self.vectors))))
                quantizer = faiss.IndexFlatIP(self.vectors.shape[1])
                index = faiss.IndexIVFFlat(quantizer, self.vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
                index.train(self.vectors)
                index.add(self.vectors)
                self._faiss = index
            self._faiss.nprobe = 16
        return self._faiss


def _load_model(model_dir):
    from goldmine.inference.model import Model

    model = Model.load(model_dir)
    if model.meta.task not in ("classification", "multilabel", "retrieval") or model.meta.pair or model.meta.members:
        raise IndexUnusable(f"{model_dir}: an index needs a sentence encoder (a retrieval model, or a single-text "
                            f"classification model's embeddings); this is a {model.meta.task} model")
    model.directory = Path(model_dir)
    return model


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
