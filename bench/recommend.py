"""Recommender benchmark on MovieLens ml-latest-small: popularity, the untuned encoder and the fine-tuned one, each
measured by recall@10 and nDCG@10 with leave-last-5-out per user; cold-start recall@10; fine-tune wall time; the
latency of one `recommend` call in process and of one request through the API (`goldmine serve`).

    python bench/recommend.py                                  # writes bench/results/recommend.json and .md
    python bench/recommend.py --max-pairs 200 --max-steps 3    # a smoke run: printed, not written
    python bench/recommend.py --only-http-latency --reuse     # after a full run: the HTTP latency, merged into it

The data (`../shared/data/movielens`, research use only) is read where it lies; nothing of it enters the repository.
Work files (the two encoders, the item indexes, and `http/`: the serving data dir, app config and state of the HTTP
measurement) go to `runs/bench-recommend/` (ignored by git).

Protocol, in the order it runs:

1. Cold items: 5% of the movies that someone liked (seeded) are removed from everything that trains or builds; they
   are only added (`add_items`, from their text) at the end.
2. Test split: per user, the last 5 ratings by timestamp are held out; those rated >= 4 are the positives. Users
   without a positive among their 5 are skipped (counted in the results).
3. Validation split: the same cut again inside each user's training history (their 6th to 10th last ratings). The
   encoder is fine-tuned on co-liked pairs of the validation split's training part only, and every choice (recency
   half-life, popularity weight, diversity) is made on validation nDCG@10; the test positives are read once, to
   report.
4. Test: the validation recommender gets the validation hold-out as new interactions (`add_interactions`: the same
   path a live system takes), so it knows exactly the test split's training part; then each method ranks 10 unseen
   items per test user.
5. Cold start: the cold items are added; for every test user who liked a cold item (at any time), the recommender
   ranks the cold items only (`filters.items`: "new arrivals"), recall@10 of their liked ones; and, the harder case,
   the whole catalog, where a new item has no popularity.
6. Latency: one `recommend` call in process (the test recommender of step 4, before the cold items), and one request
   through the API (`latency_http`): the fine-tuned encoder is registered in a fresh serving data dir
   (`<work>/http/serving`), a recommend app config names it, its `state_dir` is built with the app's `build` from the
   same warm catalog and the same interactions, in the same order, as the test recommender knows (validation
   training part, then the validation hold-out), answering with the settings chosen on validation; `goldmine serve`
   runs as a subprocess and `POST /v1/apps/recommend/recommend` is called for the same users as in process, one call
   at a time, after warm-up calls whose answers are compared with the in-process recommender's.

Fine-tuning budget: 6,000 co-liked pairs, one epoch at batch 64 (94 steps). On the shared 2-core machine a step took
28 to 60 s while other benchmarks ran, so 20,000 pairs (the first attempt) would have taken 2.5 to 5 hours; more
pairs are the obvious lever where there is more compute (`--max-pairs`).

Methods: `popularity` (most liked in train, unseen), `untuned` (the bundled all-MiniLM-L6-v2 as it is, with the
re-ranking settings tuned on validation for it), `goldmine` (the encoder fine-tuned on co-liked pairs, settings tuned
on validation for it). Every variant's test figures are reported beside them (similarity alone, each setting).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info, provenance  # noqa: E402
from runs import free_port, wait_until_ready  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "movielens"
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "runs" / "bench-recommend"
K = 10
HOLD_OUT = 5
COLD_SHARE = 0.05
SEED = 13
LATENCY_ROUNDS = 3  # calls per test user, in process and through the API
WARMUP = 10  # untimed API calls first (the first one opens the state and loads the encoder into the pool)


def percentiles(samples: list[float]) -> dict:
    """calls, p50, p90, p99 in ms: the same rule for the in-process and the HTTP figures, so they compare."""
    samples = sorted(samples)

    def at(share: float) -> float:
        return round(samples[min(len(samples) - 1, int(share * len(samples)))], 3)

    return {"calls": len(samples), "p50_ms": round(statistics.median(samples), 3), "p90_ms": at(0.90),
            "p99_ms": at(0.99)}


def latency(recommender, users: list[str], rounds: int) -> dict:
    samples = []
    for _ in range(rounds):
        for user in users:
            started = time.perf_counter()
            recommender.recommend(user_id=user, k=K)
            samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)



def http_latency(work: Path, encoder: Path, items: list, interactions: list, settings: dict, users: list[str],
                 rounds: int, threads: int, expected: dict[str, list[str]] | None = None) -> dict:
    """p50/p90/p99 of one `POST /v1/apps/recommend/recommend` at a time through `goldmine serve` (a subprocess).

    `encoder` is registered in a fresh serving data dir under `<work>/http/` (replaced on every run), the app's
    state is built there with `goldmine.apps.recommend.build` from `items` and `interactions` and answers with the
    re-ranking `settings`. The first WARMUP users are called untimed; when `expected` holds the in-process answers
    (item ids) of those users, the served answers are compared with them (`agrees_with_in_process`)."""
    import httpx
    import yaml

    from goldmine.apps.base import load_app_config
    from goldmine.apps.recommend import RecommenderConfig
    from goldmine.apps.recommend.api import build
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    base = work / "http"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    app_file, serving_file = base / "recommend.yaml", base / "serving.yaml"
    app_file.write_text(yaml.safe_dump({
        "app": "recommend", "tenant": "bench", "models": {"encoder": {"name": "bench-recommend-encoder"}},
        "state_dir": "state", "default_k": K,
        "recommender": RecommenderConfig().model_copy(update=settings).model_dump(mode="json", exclude={"finetune"})}))
    serving_file.write_text(yaml.safe_dump({"data_dir": str(base / "serving"), "apps": [str(app_file)]}))
    serving = load_settings(serving_file)
    db = open_database(serving)
    try:
        version = register(db, serving.registry_dir, "bench-recommend-encoder", encoder, "bench").version
        key = create_key(db, "bench", "predict", rate=10_000).key
        started = time.perf_counter()
        build(load_app_config(app_file, "recommend"), db, items, interactions)
        build_s = round(time.perf_counter() - started, 1)
    finally:
        db.dispose()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDMINE_")}
    env.update(GOLDMINE_CONFIG=str(serving_file), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads),
               PYTHONPATH=str(ROOT / "src"))
    log_path = base / "server.log"
    warm = users[:WARMUP]
    samples, agree = [], 0
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "goldmine.cli", "serve", "--host", "127.0.0.1", "--port",
                                   str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, server, log_path, 600)  # a loaded machine
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
                def checked(r, user: str) -> list[str]:
                    if r.status_code != 200:
                        raise RuntimeError(f"user {user}: HTTP {r.status_code}: {r.text[:500]}")
                    return [rec["item_id"] for rec in r.json()["recommendations"]]

                for user in warm:
                    answer = checked(client.post("/v1/apps/recommend/recommend", json={"user_id": user, "k": K}), user)
                    agree += expected is not None and answer == expected.get(user)
                for _ in range(rounds):
                    for user in users:
                        started = time.perf_counter()
                        r = client.post("/v1/apps/recommend/recommend", json={"user_id": user, "k": K})
                        samples.append((time.perf_counter() - started) * 1000)
                        checked(r, user)
        finally:
            server.terminate()
            server.wait(30)
    return {**percentiles(samples), "users": len(users), "rounds": rounds, "warmup_calls": len(warm),
            "agrees_with_in_process": f"{agree}/{len(warm)}" if expected is not None else None,
            "route": "POST /v1/apps/recommend/recommend", "k": K, "model_dir": str(encoder),
            "encoder_version": version, "state_build_s": build_s, "settings": settings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-pairs", type=int, default=6_000)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--reuse", action="store_true", help="Reuse encoders already trained in --work.")
    parser.add_argument("--limit-users", type=int, default=None, help="Evaluate only this many users (smoke runs).")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Where recommend.json and .md are written.")
    parser.add_argument("--only-http-latency", action="store_true",
                        help="With --reuse: measure only the HTTP latency on the encoders of --work and merge it "
                        "into <results>/recommend.json of the full run that trained them.")
    args = parser.parse_args()
    if args.only_http_latency and not args.reuse:
        parser.error("--only-http-latency needs --reuse (it measures the encoders a full run trained in --work)")
    smoke = args.limit_users is not None or (not args.only_http_latency and (args.max_steps > 0 or
                                                                             args.max_pairs < 1000))

    import torch

    torch.set_num_threads(args.threads)
    started_at = provenance()  # the commit measured is the one the run started from (a run takes an hour)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("sentence_transformers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("bench.recommend")

    from goldmine.apps.recommend import FinetuneConfig, Recommender, RecommenderConfig, read_movielens
    from goldmine.apps.recommend.evaluation import (
        ColdStart,
        evaluate_recommender,
        hold_out_items,
        leave_last_out,
        popularity_rankings,
        ranking_metrics,
        tune_reranking,
    )
    from goldmine.apps.recommend.finetune import finetune_encoder
    from goldmine.apps.recommend.recommender import _save_pretrained

    items, interactions, read = read_movielens(DATA)
    warm, cold_ids, cold_interactions = hold_out_items(interactions, [i.id for i in items], COLD_SHARE, SEED)
    warm_items = [i for i in items if i.id not in cold_ids]
    cold_items = [i for i in items if i.id in cold_ids]
    test = leave_last_out(warm, HOLD_OUT)
    val = leave_last_out(test.train, HOLD_OUT)
    # what the test recommender knows beyond the validation one: the validation hold-out of every user
    extra = list((Counter(test.train) - Counter(val.train)).elements())
    served = [*val.train, *extra]  # what the test recommender knows, in the order it learnt it
    if args.limit_users:
        for split in (test, val):
            split.positives = dict(sorted(split.positives.items())[: args.limit_users])
    log.info("items %d (cold %d), ratings %d (warm %d); test %s; validation %s", len(items), len(cold_ids),
             len(interactions), len(warm), test.summary(), val.summary())

    work = args.work
    finetune = FinetuneConfig(max_pairs=args.max_pairs, max_steps=args.max_steps, epochs=args.epochs,
                              batch_size=args.batch_size, learning_rate=args.learning_rate, num_threads=args.threads,
                              seed=SEED)
    base_config = RecommenderConfig(finetune=finetune)
    encoders = {"untuned": work / "untuned-encoder", "goldmine": work / "finetuned-encoder"}
    if args.only_http_latency:
        only_http_latency(args, encoders["goldmine"], warm_items, served, sorted(test.positives), smoke, log)
        return
    work.mkdir(parents=True, exist_ok=True)
    timing: dict = {}
    if not (args.reuse and (encoders["untuned"] / "goldmine.json").is_file()):
        _save_pretrained("bundled", encoders["untuned"], finetune.max_length)
    if not (args.reuse and (encoders["goldmine"] / "goldmine.json").is_file()):
        started = time.perf_counter()
        finetune_encoder(warm_items, val.train, encoders["goldmine"], finetune, base_config.like_threshold)
        timing["finetune_wall_s"] = round(time.perf_counter() - started, 1)
    trained = json.loads((encoders["goldmine"] / "goldmine.json").read_text())["extra"]
    summary = json.loads((encoders["goldmine"] / "metrics.json").read_text())
    timing |= {"finetune_train_s": trained["train_seconds"], "finetune_steps": trained["global_step"],
               "finetune_pairs": sum(1 for _ in (encoders["goldmine"] / "pairs.jsonl").open()),
               "finetune_best_dev_mrr10": summary.get("best_dev")}

    results: dict = {"recall10": {}, "ndcg10": {}, "variants": {}, "validation": {}, "chosen": {}, "cold": {}}
    val_pop = ranking_metrics(popularity_rankings(val.train, val.positives, K), val.positives, K)
    test_pop = ranking_metrics(popularity_rankings(test.train, test.positives, K), test.positives, K)
    results["validation"]["popularity"] = val_pop
    results["recall10"]["popularity"], results["ndcg10"]["popularity"] = test_pop["recall10"], test_pop["ndcg10"]
    log.info("popularity: validation %s, test %s", val_pop, test_pop)

    cold = None
    for name, encoder in encoders.items():
        started = time.perf_counter()
        recommender = Recommender.build(warm_items, val.train, work / f"{name}-recommender", encoder, base_config)
        timing[f"{name}_build_s"] = round(time.perf_counter() - started, 1)
        chosen, grid = tune_reranking(recommender, val.positives, k=K)  # RERANKING_GRID
        results["validation"][name] = grid
        results["chosen"][name] = chosen
        recommender.add_interactions(extra)
        variants = {}
        plain = {"recency_half_life": None, "popularity_weight": 0.0, "diversity": 0.0}
        for label, settings in (("similarity only", plain), ("tuned on validation", chosen),
                                ("tuned, no diversity", {**chosen, "diversity": 0.0}),
                                ("tuned, no popularity", {**chosen, "popularity_weight": 0.0})):
            recommender.config = recommender.config.model_copy(update=settings)
            variants[label] = {**settings, **evaluate_recommender(recommender, test.positives, K)}
            log.info("%s %s on test: %s", name, label, variants[label])
        results["variants"][name] = variants
        results["recall10"][name] = variants["tuned on validation"]["recall10"]
        results["ndcg10"][name] = variants["tuned on validation"]["ndcg10"]

        recommender.config = recommender.config.model_copy(update=chosen)
        if name == "goldmine":
            users = sorted(test.positives)
            results["latency"] = latency(recommender, users, rounds=LATENCY_ROUNDS)
            expected = {u: [r["item_id"] for r in recommender.recommend(user_id=u, k=K)] for u in users[:WARMUP]}
            results["latency_http"] = http_latency(work, encoders["goldmine"], warm_items, served, chosen, users,
                                                   LATENCY_ROUNDS, args.threads, expected)
            log.info("latency in process %s; through the API %s", results["latency"], results["latency_http"])
        started = time.perf_counter()
        recommender.add_items(cold_items)
        timing[f"{name}_add_cold_items_s"] = round(time.perf_counter() - started, 2)
        cold = cold or ColdStart.from_interactions(cold_ids, cold_interactions, recommender.users)
        among_cold = evaluate_recommender(recommender, cold.positives, K, {"items": sorted(cold_ids)})
        whole = evaluate_recommender(recommender, cold.positives, K)
        results["cold"][name] = {"among_new_items": among_cold, "whole_catalog": whole}
        log.info("%s cold: among new items %s; whole catalog %s", name, among_cold, whole)

    results["cold_recall10"] = results["cold"]["goldmine"]["among_new_items"]["recall10"]
    results["cold"]["random_among_new_items_recall10"] = round(K / len(cold_ids), 4)
    results["cold"]["users"], results["cold"]["items"] = len(cold.positives), len(cold_ids)
    started_at["model_dirs"] = {"untuned": str(encoders["untuned"]), "goldmine": str(encoders["goldmine"])}
    result = {**started_at,
              "machine": machine_info(), "data": str(DATA), "read_warnings": read.skipped,
              "protocol": {"hold_out": HOLD_OUT, "like_threshold": 4.0, "k": K, "cold_share": COLD_SHARE,
                           "seed": SEED, "test": test.summary(), "validation": val.summary(),
                           "items": len(items), "cold_items": len(cold_ids)},
              "finetune": finetune.model_dump(mode="json"), "timing": timing, **results}
    if smoke:
        print(json.dumps(result, indent=2))
        return
    write(args.results, result)


def write(results: Path, result: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "recommend.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / "recommend.md").write_text(markdown(result))
    print(markdown(result))


def only_http_latency(args, encoder: Path, items: list, served: list, users: list[str], smoke: bool, log) -> None:
    """The HTTP latency of the fine-tuned encoder of a finished full run, merged into its results: every other key
    and its provenance stay; `latency_http` carries the commit, command and date that measured it. The re-ranking
    settings are those the full run chose on validation (`chosen.goldmine`)."""
    path = args.results / "recommend.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: run the full benchmark first (python bench/recommend.py)")
    result = json.loads(path.read_text())
    measured = Path(result.get("model_dirs", {}).get("goldmine", "")).resolve()
    if measured != encoder.resolve():
        raise SystemExit(f"{path} measured the encoder {measured}, not {encoder}: give the full run's --work")
    if not (encoder / "goldmine.json").is_file():
        raise SystemExit(f"{encoder} holds no trained encoder: run the full benchmark first")
    http = http_latency(args.work, encoder, items, served, result["chosen"]["goldmine"], users, LATENCY_ROUNDS,
                        args.threads)
    own = provenance({"goldmine": str(encoder)})
    machine = machine_info()
    http |= {"git_commit": own["git_commit"], "git_dirty": own["git_dirty"], "command": own["command"],
             "date": machine["date"], "machine": machine}
    log.info("through the API: %s", http)
    if smoke:
        print(json.dumps(http, indent=2))
        return
    result["latency_http"] = http
    write(args.results, result)


def markdown(r: dict) -> str:
    p = r["protocol"]
    lines = ["# Recommender on MovieLens ml-latest-small", "",
             f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, torch threads "
             f"{r['machine']['torch_threads']}. Commit {r['git_commit']}{' (dirty)' if r['git_dirty'] else ''}. "
             f"Date {r['machine']['date']}.", "",
             f"Leave-last-{p['hold_out']}-out per user, ratings >= {p['like_threshold']} as positives: "
             f"{p['test']['evaluated_users']} users evaluated, {p['test']['skipped_no_positive']} skipped (no "
             f"positive in their last {p['hold_out']}), {p['test']['positives']} positives. {p['cold_items']} of "
             f"{p['items']} movies held out of training entirely (cold). Settings chosen on a validation split cut "
             f"from the training histories ({p['validation']['evaluated_users']} users).", "",
             "| method | recall@10 | nDCG@10 |", "|---|---:|---:|"]
    for name in ("popularity", "untuned", "goldmine"):
        lines.append(f"| {name} | {r['recall10'][name]:.4f} | {r['ndcg10'][name]:.4f} |")
    lines += ["", "Every variant on test (settings: recency half-life, popularity weight, diversity):", "",
              "| encoder | variant | half-life | pop. weight | diversity | recall@10 | nDCG@10 |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, variants in r["variants"].items():
        for label, v in variants.items():
            lines.append(f"| {name} | {label} | {v['recency_half_life']} | {v['popularity_weight']} | "
                         f"{v['diversity']} | {v['recall10']:.4f} | {v['ndcg10']:.4f} |")
    c = r["cold"]
    lines += ["", f"Cold start: {c['users']} users who liked one of the {c['items']} new items (never trained on, "
              "added from their text):", "", "| encoder | recall@10 among new items | recall@10, whole catalog |",
              "|---|---:|---:|"]
    for name in ("untuned", "goldmine"):
        lines.append(f"| {name} | {c[name]['among_new_items']['recall10']:.4f} | "
                     f"{c[name]['whole_catalog']['recall10']:.4f} |")
    lines.append(f"| random | {c['random_among_new_items_recall10']:.4f} | |")
    t = r["timing"]
    lines += ["", f"Fine-tuning: {t['finetune_pairs']} co-liked pairs, {t['finetune_steps']} steps, "
              f"{t['finetune_train_s']:.0f} s training ({t.get('finetune_wall_s', 'n/a')} s wall with data and "
              f"saving); best dev MRR@10 {t['finetune_best_dev_mrr10']}. One `recommend` call in process: p50 "
              f"{r['latency']['p50_ms']} ms, p99 {r['latency']['p99_ms']} ms over {r['latency']['calls']} calls.", ""]
    h = r.get("latency_http")
    if h:
        separately = f" Measured separately: commit {h['git_commit']}{' (dirty)' if h['git_dirty'] else ''}, " \
                     f"{h['date']}." if "command" in h else ""
        users = "the same users as in process" if h["calls"] == r["latency"]["calls"] else f"{h['users']} users"
        lines += [f"One request through the API (`{h['route']}`, k={h['k']}, `goldmine serve` subprocess, one call "
                  f"at a time after {h['warmup_calls']} warm-up calls, {users}): p50 "
                  f"{h['p50_ms']} ms, p90 {h['p90_ms']} ms, p99 {h['p99_ms']} ms over {h['calls']} calls.{separately}",
                  ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
