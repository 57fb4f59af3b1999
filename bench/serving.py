"""Serving benchmark: goldmine's server (auth + metering on) vs a naive pipeline app vs infinity-emb.

    python bench/serving.py                          # all three servers, 32 clients, 3 rounds of 3 s + 10 s each
    python bench/serving.py --only goldmine --duration 10 --no-write    # a quick look at one server
    python bench/serving.py setup-infinity           # create .venv-infinity (a full run does it when missing)
    python bench/serving.py loadgen --url URL ...    # the load generator alone (what the runner starts)

One run, one machine, one model: the sst2 classifier of bench/accuracy.py (runs/bench/sst2/seed-42) is copied
to runs/bench-serving/sst2 and exported there (`goldmine export --format onnx --quantize int8 --force`: the int8
scheme the parity gate accepts, `mixed` for sst2), and every server serves that directory:

- goldmine: `goldmine serve` on a fresh SQLite state dir (model registered, an API key with a rate limit far
  above the load), API-key auth and metering on, runtime auto (the int8 ONNX graph), goldmine's default
  micro-batching (GOLDMINE_ENV spells it out; one batch worker per core, each forward pass on one onnxruntime
  thread, is what `batching.workers` unset gives on onnxruntime). Every 200 must have
  its usage record committed: after the load the records in the database are counted against the 200s the
  clients got (`usage_records_lost`, must be 0).
- naive: bench/serving_naive.py, a FastAPI app calling a transformers `pipeline` per request (torch).
- infinity: infinity-emb (torch engine, dynamic batching) from its own venv, `.venv-infinity`
  (bench/infinity_setup.sh: it pins transformers<5), serving the directory's torch weights on `/classify`.

Each server is its own subprocess on 127.0.0.1 with a free port. All are started first; then each round loads
every server in turn (rotated order), so load from other work on the machine falls on all servers alike. A
round is a warm-up and a measured window of the same load from the same load generator, a separate process
(so it never shares a GIL with a server): asyncio + uvloop with a minimal keep-alive HTTP/1.1 client (cheaper
per request than httpx, so the client takes less of the 2 cores away from the servers), 32 concurrent
workers, each sending one sst2 dev text per request. Latency is measured per request from send to the last
byte of the response; throughput is the 200s started in the measured windows divided by the time until the
last of them finished (summed over rounds); percentiles are over the pooled latencies of all rounds. All
servers and the load generator share the machine's cores; each result records the CPU the server and the
client used while measured.

Results: bench/results/serving.json and serving.md (machine, versions, date, settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WORK = ROOT / "runs" / "bench-serving"
INFINITY_VENV = ROOT / ".venv-infinity"
DEFAULT_SOURCE = ROOT / "runs" / "bench" / "sst2" / "seed-42"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sst2" / "dev.jsonl"
SERVERS = ("goldmine", "naive", "infinity")
TARGETS = {"naive": 3.0, "infinity": 1.5}  # goldmine's throughput must be at least this multiple, with lower p99
TENANT, MODEL_NAME = "bench", "sst2"

# goldmine's serving settings, all of them its defaults (written out so that the result records them): batches
# of up to 32 texts (the number of clients), a short wait for company (under load, batches fill while the
# previous one runs), batch workers and threads left to the runtime (onnxruntime: one single-threaded worker
# per core), SQLite with full fsync.
GOLDMINE_ENV = {
    "GOLDMINE_BATCHING__MAX_BATCH_SIZE": "32",
    "GOLDMINE_BATCHING__FORWARD_SIZE": "8",
    "GOLDMINE_BATCHING__MAX_WAIT_MS": "2",
    "GOLDMINE_SQLITE_SYNCHRONOUS": "FULL",
}


# ---- the load generator (its own process) ----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a body, read status and body (Content-Length or chunked)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in
                            {"Host": f"{host}:{port}", "Content-Type": "application/json", **headers}.items()).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
                          % (path.encode(), self.head, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = None, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            data = b"".join(p[:-2] for p in parts)
        else:
            data = await self.reader.readexactly(length or 0)
        if close:
            self.close()
        return status, data


def request_body(kind: str, text: str) -> bytes:
    if kind == "goldmine":
        return json.dumps({"texts": [text]}).encode()
    if kind == "naive":
        return json.dumps({"text": text}).encode()
    return json.dumps({"model": MODEL_NAME, "input": [text]}).encode()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants (all threads), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, 0.0)
        todo += children.get(current, [])
    return total


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


async def _load(args, texts: list[str]) -> dict:
    host, _, rest = args.url.removeprefix("http://").partition(":")
    port, _, path = rest.partition("/")
    path = "/" + path
    headers = dict(h.split(": ", 1) for h in args.header)
    if os.environ.get("BENCH_AUTHORIZATION"):
        headers["Authorization"] = os.environ["BENCH_AUTHORIZATION"]
    bodies = [request_body(args.kind, t) for t in texts]
    start = time.perf_counter()  # not loop.time(): uvloop's clock has millisecond steps
    measure_start, measure_end = start + args.warmup, start + args.warmup + args.duration
    latencies: list[float] = []
    finished: list[float] = []
    statuses: dict[int, int] = {}
    ok_total, errors, bad_bodies = 0, 0, 0
    cpu_marks: dict[str, tuple[float, float]] = {}

    async def mark() -> None:
        await asyncio.sleep(max(0.0, measure_start - time.perf_counter()))
        cpu_marks["start"] = (process_cpu_seconds(args.server_pid) if args.server_pid else 0.0, time.process_time())
        await asyncio.sleep(max(0.0, measure_end - time.perf_counter()))
        cpu_marks["end"] = (process_cpu_seconds(args.server_pid) if args.server_pid else 0.0, time.process_time())

    async def worker(i: int) -> None:
        nonlocal ok_total, errors, bad_bodies
        connection = Connection(host, int(port), headers)
        n = i
        while (sent := time.perf_counter()) < measure_end:
            body = bodies[n % len(bodies)]
            n += args.concurrency
            try:
                status, data = await connection.post(path, body)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                connection.close()
                errors += 1
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            if status == 200:
                ok_total += 1
                if n < 2 * args.concurrency and not data.startswith((b"{", b"[")):
                    bad_bodies += 1
            if sent >= measure_start:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(done - sent)
                    finished.append(done)
        connection.close()

    marker = asyncio.create_task(mark())
    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    await marker
    latencies.sort()
    elapsed = (max(finished) - measure_start) if finished else args.duration
    ok = len(latencies)

    def pct(q: float) -> float | None:
        return round(1000 * latencies[min(ok - 1, int(q * ok))], 2) if ok else None

    server_cpu = cpu_marks["end"][0] - cpu_marks["start"][0]
    client_cpu = cpu_marks["end"][1] - cpu_marks["start"][1]
    return {
        "throughput_rps": round(ok / elapsed, 2) if ok else 0.0,
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
        "mean_ms": round(1000 * sum(latencies) / ok, 2) if ok else None,
        "max_ms": round(1000 * latencies[-1], 2) if ok else None,
        "ok": ok, "non_200": sum(c for s, c in statuses.items() if s != 200),
        "statuses": {str(s): c for s, c in sorted(statuses.items())},
        "connection_errors": errors, "unexpected_bodies": bad_bodies,
        "ok_total_including_warmup": ok_total, "measured_seconds": round(elapsed, 2),
        "server_cpu_seconds": round(server_cpu, 2), "server_cores_busy": round(server_cpu / args.duration, 2),
        "loadgen_cpu_seconds": round(client_cpu, 2), "loadgen_cores_busy": round(client_cpu / args.duration, 2),
        "server_os_threads": thread_count(args.server_pid) if args.server_pid else None,
        "latencies_ms": [round(1000 * x, 3) for x in latencies],  # pooled over rounds by the runner
    }


def loadgen(args) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    texts = [json.loads(line)["text"] for line in Path(args.data).read_text().splitlines() if line.strip()]
    random.Random(0).shuffle(texts)
    result = asyncio.run(_load(args, texts))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


# ---- the servers --------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    command: list[str]
    url: str  # the predict endpoint
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    describe: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log: Path | None = None

    def start(self, log: Path, timeout: float = 300) -> None:
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **self.env}
        with log.open("w") as out:
            self.process = subprocess.Popen(self.command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout}s (log: {log})")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)  # the server's own session: uvicorn shuts down cleanly
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def post(self, body: dict, timeout: float = 30) -> dict | list:
        request = urllib.request.Request(self.url, json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", **self.headers})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_model(model_dir: Path, source: Path) -> None:
    """Copy the sst2 run (never modified itself) and export int8 ONNX beside its torch weights."""
    if not (model_dir / "goldmine.json").is_file():
        shutil.copytree(source, model_dir, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    if not (model_dir / "onnx" / "model.int8.onnx").is_file():
        goldmine = Path(sys.executable).with_name("goldmine")
        subprocess.run([str(goldmine), "export", str(model_dir), "--format", "onnx", "--quantize", "int8",
                        "--force"], check=True, cwd=ROOT)


def setup_infinity() -> None:
    subprocess.run(["bash", str(BENCH / "infinity_setup.sh")], check=True, cwd=ROOT)


def goldmine_server(model_dir: Path, state: Path) -> Server:
    """A fresh state dir: the model registered, one predict key whose rate limit never binds here."""
    from goldmine.inference.runtime import available_cores, resolve_runtime
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.runtime import compute_workers
    from goldmine.serving.settings import load_settings

    settings = load_settings(data_dir=state)
    db = open_database(settings)
    version = register(db, settings.registry_dir, MODEL_NAME, model_dir, TENANT)
    key = create_key(db, TENANT, "predict", rate=100_000)
    db.dispose()
    port = free_port()
    runtime = resolve_runtime(version.path)
    return Server(
        "goldmine", [str(Path(sys.executable).with_name("goldmine")), "serve", "--port", str(port)],
        f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}/predict", f"http://127.0.0.1:{port}/readyz",
        env={"GOLDMINE_DATA_DIR": str(state), **GOLDMINE_ENV}, headers={"Authorization": f"Bearer {key.key}"},
        describe={"runtime": runtime, "auth": "API key (Bearer)", "metering": "usage record committed per call",
                  "database": "SQLite (WAL, synchronous=FULL)",
                  "compute_threads": f"{compute_workers(runtime, None, 1)} batch workers x "
                  f"{1 if runtime != 'torch' else available_cores()} "
                  f"{'onnxruntime intra-op' if runtime != 'torch' else 'torch'} thread(s)",
                  "settings": GOLDMINE_ENV, "model_version": version.version},
    )


def naive_server(model_dir: Path) -> Server:
    import torch

    port = free_port()
    return Server("naive", [sys.executable, str(BENCH / "serving_naive.py"), str(model_dir), "--port", str(port)],
                  f"http://127.0.0.1:{port}/predict", f"http://127.0.0.1:{port}/healthz",
                  describe={"runtime": "torch (transformers pipeline, one text per call)",
                            "compute_threads": f"torch intra-op {torch.get_num_threads()}",
                            "server": "FastAPI sync endpoint in uvicorn's thread pool"})


def infinity_server(model_dir: Path, batch_size: int) -> Server:
    port = free_port()
    python = INFINITY_VENV / "bin" / "python"
    versions = subprocess.run([str(python), "-c", "import infinity_emb, torch, transformers; print(infinity_emb."
                               "__version__, torch.__version__, transformers.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    return Server(
        "infinity", [str(INFINITY_VENV / "bin" / "infinity_emb"), "v2", "--model-id", str(model_dir),
                     "--served-model-name", MODEL_NAME, "--engine", "torch", "--device", "cpu",
                     "--batch-size", str(batch_size), "--trust-remote-code", "--no-bettertransformer",
                     "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        f"http://127.0.0.1:{port}/classify", f"http://127.0.0.1:{port}/health",
        env={"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"},
        describe={"runtime": "torch (infinity-emb torch engine, transformers pipeline per batch)",
                  "compute_threads": "torch intra-op default (all cores)", "batch_size": batch_size,
                  "versions": dict(zip(("infinity-emb", "torch", "transformers"), versions, strict=True))},
    )


def label_of(kind: str, answer) -> str:
    if kind == "goldmine":
        return answer["predictions"][0]["label"]
    if kind == "naive":
        return answer[0]["label"]
    return max(answer["data"][0], key=lambda p: p["score"])["label"]


def served_accuracy(server: Server, data: list[dict], clients: int = 8) -> dict:
    """Accuracy on the sst2 dev texts as this server answers them, one text per call (after the load)."""
    from concurrent.futures import ThreadPoolExecutor

    def answer(row: dict) -> str | None:
        try:
            return label_of(server.name, server.post(json.loads(request_body(server.name, row["text"]))))
        except (urllib.error.URLError, OSError, KeyError, IndexError):
            return None

    with ThreadPoolExecutor(clients) as pool:
        labels = list(pool.map(answer, data))
    right = sum(label == str(row["label"]) for label, row in zip(labels, data, strict=True))
    return {"dev_accuracy": round(right / len(data), 4), "answered": sum(x is not None for x in labels),
            "examples": len(data)}


def count_usage(state: Path) -> dict:
    from sqlalchemy import func, select

    from goldmine.serving.db import UsageRecord, open_database
    from goldmine.serving.settings import load_settings

    db = open_database(load_settings(data_dir=state), upgrade=False)
    with db.session() as session:
        calls, tokens = session.execute(select(func.count(), func.sum(UsageRecord.input_tokens))).one()
    db.dispose()
    return {"records": int(calls), "input_tokens": int(tokens or 0)}


def measure(server: Server, args, work: Path, round_: int) -> dict:
    """One round of load on `server` from a load generator process; the loadgen's JSON plus the load average."""
    out = work / f"{server.name}.load{round_}.json"
    command = [sys.executable, __file__, "loadgen", "--url", server.url, "--kind", server.name, "--data",
               str(args.data), "--concurrency", str(args.concurrency), "--warmup", str(args.warmup),
               "--duration", str(args.duration), "--out", str(out), "--server-pid", str(server.process.pid)]
    env = {**os.environ}
    if "Authorization" in server.headers:
        env["BENCH_AUTHORIZATION"] = server.headers["Authorization"]  # not on the command line
    load_before = os.getloadavg()[0]
    profiler = None
    if args.profile:  # py-spy over the measured window (pip install py-spy)
        args.profile.mkdir(parents=True, exist_ok=True)
        profiler = subprocess.Popen(
            ["bash", "-c", f"sleep {args.warmup}; exec py-spy record --nonblocking --threads -r 50 -f raw "
             f"-d {int(args.duration)} -p {server.process.pid} -o {args.profile / f'{server.name}{round_}.txt'}"],
            stdout=subprocess.DEVNULL)
    subprocess.run(command, check=True, env=env, timeout=args.warmup + args.duration + 300)
    if profiler is not None:
        profiler.wait(60)
    result = json.loads(out.read_text())
    result["loadavg_1min_before"] = round(load_before, 2)
    return result


def build_server(name: str, args, state: Path) -> Server:
    if name == "goldmine":
        return goldmine_server(args.model, state)
    if name == "naive":
        return naive_server(args.model)
    setup_infinity()
    return infinity_server(args.model, args.concurrency)


def combine(rounds: list[dict]) -> dict:
    """One server's rounds as one measurement: latencies pooled, throughput = 200s / measured seconds."""
    latencies = sorted(x for r in rounds for x in r["latencies_ms"])
    ok, seconds = len(latencies), sum(r["measured_seconds"] for r in rounds)
    duration = sum(r["server_cpu_seconds"] / r["server_cores_busy"] for r in rounds if r["server_cores_busy"])

    def pct(q: float) -> float | None:
        return round(latencies[min(ok - 1, int(q * ok))], 2) if ok else None

    def total(field: str) -> float:
        return round(sum(r[field] for r in rounds), 2)

    return {
        "throughput_rps": round(ok / seconds, 2) if ok else 0.0,
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
        "mean_ms": round(sum(latencies) / ok, 2) if ok else None, "max_ms": latencies[-1] if ok else None,
        "ok": ok, "non_200": int(total("non_200")), "connection_errors": int(total("connection_errors")),
        "unexpected_bodies": int(total("unexpected_bodies")),
        "ok_total_including_warmup": int(total("ok_total_including_warmup")), "measured_seconds": round(seconds, 2),
        "server_cpu_seconds": total("server_cpu_seconds"), "loadgen_cpu_seconds": total("loadgen_cpu_seconds"),
        "server_cores_busy": round(total("server_cpu_seconds") / duration, 2) if duration else None,
        "loadgen_cores_busy": round(total("loadgen_cpu_seconds") / duration, 2) if duration else None,
        "server_os_threads": max(r["server_os_threads"] or 0 for r in rounds),
        "rounds": [{k: r[k] for k in ("throughput_rps", "p50_ms", "p99_ms", "server_cores_busy",
                                      "loadavg_1min_before")} for r in rounds],
    }


def run_servers(names: list[str], args, work: Path, data: list[dict]) -> dict:
    """Start every server, load them in interleaved rounds, then check served accuracy and count usage records.

    Interleaving (round r visits the servers in a rotated order) spreads whatever else runs on the machine over
    all servers instead of landing on whichever happened to be measured at the time.
    """
    state = work / "goldmine-state"
    servers: dict[str, Server] = {}
    results: dict[str, dict] = {}
    rounds: dict[str, list[dict]] = {}
    live: list[str] = []
    try:
        for name in names:
            print(f"[{name}] starting", flush=True)
            started = time.perf_counter()
            try:
                server = build_server(name, args, state)
                servers[name] = server
                server.start(work / f"{name}.log")
            except (RuntimeError, subprocess.CalledProcessError, OSError) as err:
                print(f"[{name}] failed: {err}", file=sys.stderr, flush=True)
                results[name] = {"error": str(err).strip().splitlines()[0][:300], "throughput_rps": None,
                                 "p99_ms": None}
                continue
            results[name] = {"startup_seconds": round(time.perf_counter() - started, 1), **server.describe}
            rounds[name] = []
            print(f"[{name}] ready in {results[name]['startup_seconds']}s", flush=True)
        live = [n for n in names if n in rounds]
        for r in range(args.rounds if live else 0):
            for name in live[r % len(live):] + live[: r % len(live)]:
                result = measure(servers[name], args, work, r)
                rounds[name].append(result)
                print(f"[{name}] round {r + 1}/{args.rounds}: {result['throughput_rps']} req/s, p50 "
                      f"{result['p50_ms']} ms, p99 {result['p99_ms']} ms, non-200 {result['non_200']}, server "
                      f"{result['server_cores_busy']} cores, loadavg {result['loadavg_1min_before']}", flush=True)
        for name in live:
            results[name].update(combine(rounds[name]))
            if args.accuracy:
                results[name]["served"] = served_accuracy(servers[name], data)
    finally:
        for server in servers.values():
            server.stop()
    if "goldmine" in rounds:
        usage = count_usage(state)
        answered = results["goldmine"]["ok_total_including_warmup"] + results["goldmine"].get(
            "served", {}).get("answered", 0)
        results["goldmine"]["usage"] = {"answered_ok": answered, **usage, "lost": answered - usage["records"]}
    for name in live:
        r = results[name]
        print(f"[{name}] {r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
              f"non-200 {r['non_200']}", flush=True)
    return results


def summarise(results: dict) -> dict:
    g = results.get("goldmine", {})
    targets = {}
    for peer, factor in TARGETS.items():
        p = results.get(peer, {})
        if g.get("throughput_rps") and p.get("throughput_rps"):
            ratio = g["throughput_rps"] / p["throughput_rps"]
            targets[peer] = {"throughput_ratio": round(ratio, 2), "required_ratio": factor,
                             "lower_p99": g["p99_ms"] < p["p99_ms"],
                             "met": ratio >= factor and g["p99_ms"] < p["p99_ms"]}
    return targets


def write(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    m, load = results["machine"], results["load"]
    lines = [
        "# Serving benchmark",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; date {m.get('date')}; "
        f"torch {m['versions'].get('torch')}, transformers {m['versions'].get('transformers')}, "
        f"onnxruntime {m['versions'].get('onnxruntime')}.",
        f"Model: {load['model']} (sst2, MiniLM-L6). Load: {load['concurrency']} concurrent clients on loopback, "
        f"one sst2 dev text per request; {load['rounds']} interleaved rounds per server of {load['warmup_s']} s "
        f"warm-up then {load['duration_s']} s measured; client: {load['client']}. Every server and the load "
        f"generator share the machine's {m.get('cores')} cores.",
        "",
        "| server | runtime | req/s | p50 ms | p90 ms | p99 ms | non-200 | server cores busy | client cores busy | "
        "OS threads | dev acc. (served) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SERVERS:
        r = results.get(name)
        if r is None:
            continue
        if r.get("error"):
            lines.append(f"| {name} | - | not measured: {r['error']} | | | | | | | | |")
            continue
        acc = r.get("served", {}).get("dev_accuracy", "-")
        lines.append(f"| {name} | {r['runtime'].split(' (')[0]} | {r['throughput_rps']} | {r['p50_ms']} | "
                     f"{r['p90_ms']} | {r['p99_ms']} | {r['non_200']} | {r['server_cores_busy']} | "
                     f"{r['loadgen_cores_busy']} | {r['server_os_threads']} | {acc} |")
    lines += ["", f"Usage records lost (goldmine, 200s answered minus records committed): "
                  f"**{results['usage_records_lost']}**"]
    usage = results.get("goldmine", {}).get("usage")
    if usage:
        lines[-1] += f" ({usage['answered_ok']} answered, {usage['records']} records)."
    if results.get("targets"):
        lines += ["", "| target | goldmine / peer throughput | required | lower p99 | met |",
                  "|---|---:|---:|---|---|"]
        for peer, t in results["targets"].items():
            lines.append(f"| vs {peer} | {t['throughput_ratio']}x | {t['required_ratio']}x | {t['lower_p99']} | "
                         f"{'yes' if t['met'] else 'no'} |")
    lines += ["", "Per round (req/s; the 1-minute load average before it shows what else ran on the machine):"]
    for name in SERVERS:
        r = results.get(name)
        if r and r.get("rounds"):
            lines.append(f"- {name}: " + ", ".join(f"{x['throughput_rps']} (load {x['loadavg_1min_before']})"
                                                   for x in r["rounds"]))
    lines += ["", "Servers:"]
    for name in SERVERS:
        r = results.get(name)
        if r and not r.get("error"):
            extra = {k: r[k] for k in ("compute_threads", "auth", "metering", "database", "settings", "batch_size",
                                       "server", "versions") if k in r}
            lines.append(f"- {name}: {r['runtime']}; " + "; ".join(f"{k}: {v}" for k, v in extra.items()))
    if results.get("note"):
        lines += ["", f"Note: {results['note']}"]
    (RESULTS / "serving.md").write_text("\n".join(lines) + "\n")


def run(args) -> None:
    sys.path.insert(0, str(BENCH))
    from machine import machine_info

    WORK.mkdir(parents=True, exist_ok=True)
    args.model = args.model.resolve()
    if args.model == WORK / "sst2":
        prepare_model(args.model, args.source)
    data = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    work = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    results = run_servers(args.only.split(","), args, work, data)
    machine = machine_info()
    from importlib.metadata import version

    machine["versions"]["onnxruntime"] = version("onnxruntime")
    machine["versions"]["uvicorn"] = version("uvicorn")
    results.update({
        "usage_records_lost": results.get("goldmine", {}).get("usage", {}).get("lost"),
        "targets": summarise(results),
        "load": {"concurrency": args.concurrency, "rounds": args.rounds, "warmup_s": args.warmup,
                 "duration_s": args.duration,
                 "texts": f"{args.data.name} ({len(data)} sst2 dev texts, shuffled, one per request)",
                 "model": str(args.model.relative_to(ROOT)) if args.model.is_relative_to(ROOT) else str(args.model),
                 "client": "asyncio + uvloop, keep-alive HTTP/1.1, one connection per client, separate process"},
        "machine": machine,
    })
    if args.note:
        results["note"] = args.note
    print(json.dumps({k: {m: v.get(m) for m in ("throughput_rps", "p50_ms", "p99_ms")} if isinstance(v, dict)
                      and "throughput_rps" in v else v for k, v in results.items() if k != "machine"}, indent=1))
    if args.write:
        write(results)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--only", default=",".join(SERVERS), help="comma-separated: goldmine, naive, infinity")
    parser.add_argument("--model", type=Path, default=WORK / "sst2", help="model directory every server serves")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="run copied to --model when missing")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sst2 dev.jsonl (texts of the requests)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of load per server, interleaved")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measured round")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per round")
    parser.add_argument("--no-accuracy", dest="accuracy", action="store_false",
                        help="skip the served dev accuracy check after the load")
    parser.add_argument("--no-write", dest="write", action="store_false", help="print, do not write results")
    parser.add_argument("--keep", action="store_true", help="keep logs and the goldmine state dir")
    parser.add_argument("--note", default=None, help="how the run was made")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each server while measured, into DIR")
    sub.add_parser("setup-infinity", help="create .venv-infinity with infinity-emb")
    gen = sub.add_parser("loadgen", help="the load generator (started by a run)")
    gen.add_argument("--url", required=True)
    gen.add_argument("--kind", choices=SERVERS, required=True)
    gen.add_argument("--data", required=True)
    gen.add_argument("--concurrency", type=int, default=32)
    gen.add_argument("--warmup", type=float, default=5.0)
    gen.add_argument("--duration", type=float, default=30.0)
    gen.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    gen.add_argument("--server-pid", type=int, default=0, help="server process whose CPU time to record")
    gen.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "loadgen":
        loadgen(args)
    elif args.command == "setup-infinity":
        setup_infinity()
    else:
        run(args)


if __name__ == "__main__":
    main()
