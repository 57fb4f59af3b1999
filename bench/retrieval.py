"""Where exact search stops being fast enough: numpy (exact) against FAISS IVF (what `goldmine.retrieval.index`
switches to from `FAISS_FROM` entries on), per corpus size, on random unit vectors of the bundled encoder's size.

    python bench/retrieval.py                  # writes bench/results/retrieval.json and .md
    python bench/retrieval.py --sizes 10000 --queries 8     # a smoke run: printed, not written

For each size: the median latency of one query (the HTTP API's case) and of a batch of 32, exact numpy top-10
against FAISS IVF (4 sqrt(N) lists, nprobe 16) top-10, and IVF's recall@10 against the exact answer. The vectors are
random, which is the hard case for IVF (real embeddings cluster, so its recall is higher on them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info, provenance  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DIMENSION = 384
SLO_MS = 10.0  # one query's exact search may take this long before an index pays


def timed(call, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    similarity = queries @ vectors.T
    top = np.argpartition(-similarity, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def measure(size: int, queries: int, rng: np.random.Generator) -> dict:
    import faiss

    vectors = rng.standard_normal((size, DIMENSION), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    asked = vectors[rng.choice(size, queries, replace=False)] + 0.5 * rng.standard_normal((queries, DIMENSION),
                                                                                       dtype=np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    started = time.perf_counter()
    lists = max(1, int(4 * np.sqrt(size)))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIMENSION), DIMENSION, lists, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add(vectors)
    ivf.nprobe = 16
    build_s = time.perf_counter() - started
    truth = exact(vectors, asked, 10)
    found = ivf.search(asked, 10)[1]
    recall = statistics.fmean(len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True))
    one = asked[:1]
    batch = asked[:32]
    return {"size": size, "ivf_lists": lists, "ivf_build_s": round(build_s, 3), "ivf_recall10": round(recall, 4),
            "exact_one_ms": timed(lambda: exact(vectors, one, 10), 15),
            "ivf_one_ms": timed(lambda: ivf.search(one, 10), 15),
            "exact_batch32_ms": timed(lambda: exact(vectors, batch, 10), 5),
            "ivf_batch32_ms": timed(lambda: ivf.search(batch, 10), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,100000,200000,500000,1000000")
    parser.add_argument("--queries", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(size, args.queries, rng))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    past = [r["size"] for r in rows if r["exact_one_ms"] > SLO_MS]
    result = {**provenance(), "machine": machine_info(), "dimension": DIMENSION, "slo_ms": SLO_MS,
              "exact_slower_than_slo_from": past[0] if past else None, "rows": rows}
    if args.sizes != parser.get_default("sizes"):
        print(json.dumps(result, indent=2))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Exact (numpy) vs FAISS IVF search", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. "
             f"Commit {result['git_commit']}. Random unit vectors, {DIMENSION} dimensions, top-10; median ms.", "",
             "| entries | exact, 1 query | IVF, 1 query | exact, 32 | IVF, 32 | IVF recall@10 | IVF build s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['exact_one_ms']:.2f} | {r['ivf_one_ms']:.2f} | "
                     f"{r['exact_batch32_ms']:.1f} | {r['ivf_batch32_ms']:.1f} | {r['ivf_recall10']:.3f} | "
                     f"{r['ivf_build_s']:.1f} |")
    lines += ["", f"Exact search of one query passes {SLO_MS} ms from {result['exact_slower_than_slo_from']} entries."]
    (RESULTS / "retrieval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
