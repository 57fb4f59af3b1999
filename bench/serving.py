"""Serving benchmark: goldmine's server (auth + metering on) vs a naive pipeline app vs infinity-emb.

    python bench/serving.py                          # every server, 32 clients, 3 rounds of 3 s + 10 s each
    python bench/serving.py --only goldmine --duration 10 --no-write    # a quick look at one server
    python bench/serving.py --model DIR ...          # another trained sst2 run than accuracy.json's
    python bench/serving.py setup-infinity           # create .venv-infinity (a full run does it when missing)
    python bench/serving.py loadgen --url URL ...    # the load generator alone (what the runner starts)

One run, one machine, one model: the sst2 classifier of bench/accuracy.py (the `model_dir` of the sst2 entry in
bench/results/accuracy.json; --model overrides it) is copied to runs/bench-serving/sst2 (again whenever its weights
differ from the copy's) and exported there (`goldmine export --format onnx --quantize int8 --force`, again whenever
goldmine's export code changed: the fastest int8 scheme the parity gate accepts), and every server serves that
model:

- goldmine: `goldmine serve` on a fresh SQLite state dir (model registered, an API key with a rate limit far
  above the load), API-key auth and metering on, runtime auto (the int8 ONNX graph), goldmine's default
  micro-batching (GOLDMINE_ENV spells it out; one batch worker per core, each forward pass on one onnxruntime
  thread, is what `batching.workers` unset gives on onnxruntime). Every 200 must have its usage record
  committed: after the load the records in the database are counted against the 200s the clients got
  (`usage_records_lost`, must be 0).
- goldmine-torch: the same server and batching settings with `runtime: torch` (GOLDMINE_RUNTIME=torch: one batch
  worker on torch's intra-op pool), so that batching (goldmine-torch vs infinity-torch: same runtime) and the
  runtime (goldmine vs goldmine-torch: same server) are credited separately.
- naive: bench/serving_naive.py, a FastAPI app calling a transformers `pipeline` per request (torch).
- infinity-*: infinity-emb from its own venv, `.venv-infinity` (bench/infinity_setup.sh: it pins
  transformers<5), dynamic batching, on its `/classify` endpoint, in every configuration it offers on CPU:
  - infinity-torch: `--engine torch` on the directory's torch weights (a transformers pipeline per batch);
  - infinity-torch-int8: `--engine torch --dtype int8`: torch's dynamic int8 quantization of the Linear
    layers (`--dtype` acts on the torch engine only; the optimum engine ignores it);
  - infinity-optimum / infinity-optimum-int8: `--engine optimum` (onnxruntime through optimum's
    ORTModelForSequenceClassification). That engine does not export: it loads the *.onnx file of the model
    directory, preferring on CPU one whose name contains "quantize". So the run exports the torch weights
    with optimum (`optimum-cli export onnx --task text-classification --optimize O2`, from the infinity venv)
    into runs/bench-serving/sst2-optimum/fp32, and quantizes that with optimum's dynamic int8 for this CPU
    (`optimum-cli onnxruntime quantize --avx512_vnni|--avx512|--avx2`: model_quantized.onnx) into .../int8.
    Three things infinity 0.0.78 does not do with optimum 2.x (the only optimum torch 2.13 allows) are
    stood in for, as `describe.workarounds` records: its own onnxruntime graph optimisation at load fails
    (OptimizationConfig no longer takes `optimize_with_onnxruntime_only`), so the export applies optimum's O2
    (the same fusions, without GELU approximation); it passes the ONNX file to optimum as a full path, which
    optimum-onnx looks up by bare name, so it runs in the model directory with `--model-id .`; and its
    optimum classifier calls the pipeline without truncation, so its 512-token warm-up fails on any
    512-position BERT, hence `--no-model-warmup` (sst2 texts are far shorter).

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

Results: bench/results/serving.json and serving.md (machine, versions, date, settings, provenance), with
`infinity_best` (the infinity configuration with the highest requests/s) and `speedup_vs_infinity_best`
(goldmine's requests/s over it; target 1.5x with a lower p99 and no usage record lost).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shlex
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
SRC = ROOT / "src" / "goldmine"
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WORK = ROOT / "runs" / "bench-serving"
SERVED = WORK / "sst2"  # the copy every server serves (goldmine's ONNX exports beside its torch weights)
OPTIMUM_DIR = WORK / "sst2-optimum"  # optimum's exports of SERVED for infinity's optimum engine: fp32/, int8/
INFINITY_VENV = ROOT / ".venv-infinity"
FALLBACK_SOURCE = ROOT / "runs" / "bench" / "sst2"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sst2" / "dev.jsonl"
GOLDMINE_SERVERS = ("goldmine", "goldmine-torch")
INFINITY_SERVERS = ("infinity-torch", "infinity-torch-int8", "infinity-optimum", "infinity-optimum-int8")
SERVERS = (*GOLDMINE_SERVERS, "naive", *INFINITY_SERVERS)
KINDS = ("goldmine", "naive", "infinity")  # the request format of a server: its name up to the first "-"
# goldmine's (int8 ONNX) throughput must be at least this multiple of the peer's, with a lower p99
TARGETS = {"naive": 3.0, "infinity_best": 1.5}
TENANT, MODEL_NAME = "bench", "sst2"

# goldmine's serving settings, all of them its defaults (written out so that the result records them): batches
# of up to 32 texts (the number of clients), a short wait for company (under load, batches fill while the
# previous one runs), batch workers and threads left to the runtime (onnxruntime: one single-threaded worker
# per core), SQLite with full fsync.
GOLDMINE_ENV = {
    "GOLDMINE_BATCHING__MAX_BATCH_SIZE": "32",
    "GOLDMINE_BATCHING__FORWARD_SIZE": "4",
    "GOLDMINE_BATCHING__MAX_WAIT_MS": "2",
    "GOLDMINE_SQLITE_SYNCHRONOUS": "FULL",
}


def kind_of(name: str) -> str:
    return name.split("-")[0]


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
    cwd: Path = ROOT
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.name)

    def start(self, log: Path, timeout: float = 300) -> None:
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **self.env}
        with log.open("w") as out:
            self.process = subprocess.Popen(self.command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.cwd, start_new_session=True)
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


def source_model(model: Path | None) -> Path:
    """The trained sst2 run to serve: --model, else the `model_dir` of the sst2 entry in bench/results/accuracy.json
    (the run bench/accuracy.py trained last; the directory moves with its options), else runs/bench/sst2."""
    if model is not None:
        where = "--model"
    else:
        accuracy = RESULTS / "accuracy.json"
        entry = json.loads(accuracy.read_text()).get("sst2", {}) if accuracy.is_file() else {}
        model = ROOT / entry["model_dir"] if entry.get("model_dir") else FALLBACK_SOURCE
        where = f"`model_dir` of sst2 in {accuracy.relative_to(ROOT)}" if entry.get("model_dir") else \
            f"the fallback (no sst2 model_dir in {accuracy.relative_to(ROOT)})"
    model = model.resolve()
    if not (model / "goldmine.json").is_file() or not (model / "model.safetensors").is_file():
        raise SystemExit(f"bench/serving.py: no trained sst2 model at {model} ({where}): it needs goldmine.json and "
                         "model.safetensors. Train it with `.venv/bin/python bench/accuracy.py --only sst2`, or pass "
                         "--model DIR (a `goldmine train` run directory).")
    return model


def weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    with (model_dir / "model.safetensors").open("rb") as weights:
        while chunk := weights.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def is_current(directory: Path, stamp: dict) -> bool:
    path = directory / ".bench-source.json"
    return path.is_file() and json.loads(path.read_text()) == stamp


def prepare_model(source: Path) -> dict:
    """Copy the sst2 run (never modified itself) to SERVED and export int8 ONNX beside its torch weights.

    The copy is made again whenever its weights differ from the source's (or it came from another directory), and
    exported again whenever goldmine's export code changed, so a run never serves the model or the graphs of an
    earlier one. Returns the stamp (source directory + weights sha256)."""
    stamp = {"source": str(source), "weights_sha256": weights_digest(source)}
    if not is_current(SERVED, stamp):
        shutil.rmtree(SERVED, ignore_errors=True)
        shutil.copytree(source, SERVED, ignore=shutil.ignore_patterns("checkpoints", "logs", "onnx", "eval"))
        (SERVED / ".bench-source.json").write_text(json.dumps(stamp, indent=1) + "\n")
    exported = {"export_code": export_code_digest()}
    marker = SERVED / ".bench-export.json"
    if not (marker.is_file() and json.loads(marker.read_text()) == exported):
        goldmine = Path(sys.executable).with_name("goldmine")
        subprocess.run([str(goldmine), "export", str(SERVED), "--format", "onnx", "--quantize", "int8", "--force"],
                       check=True, cwd=ROOT)
        marker.write_text(json.dumps(exported, indent=1) + "\n")
    return stamp


def export_code_digest() -> str:
    """sha256 of goldmine's export code (the exporter, quantisation, the ONNX graph, the runtimes)."""
    digest = hashlib.sha256()
    for path in sorted([*(SRC / "export").glob("*.py"), SRC / "inference" / "runtime.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cpu_quantization_flag() -> str:
    """optimum's dynamic int8 preset for this CPU (the instructions its int8 kernels may use)."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if {"avx512f", "avx512_vnni"} <= flags:
        return "--avx512_vnni"
    return "--avx512" if "avx512f" in flags else "--avx2"


def prepare_optimum(stamp: dict) -> dict:
    """optimum's ONNX exports of SERVED for infinity's optimum engine: fp32/ (O2-optimised) and int8/ (dynamic int8).

    Made with optimum-cli from the infinity venv, as an infinity user would make them, and again whenever SERVED
    changed: a plain export (export/), optimised with O2 into fp32/, and the plain export quantized into int8/
    (onnxruntime's quantizer cannot type the fused operators of an optimised graph). Returns how they were made."""
    cli = str(INFINITY_VENV / "bin" / "optimum-cli")
    flag = cpu_quantization_flag()
    made = {"export": "optimum-cli export onnx --task text-classification --trust-remote-code (export/model.onnx)",
            "fp32": "optimum-cli onnxruntime optimize -O2 on the export (fp32/model_optimized.onnx)",
            "int8": f"optimum-cli onnxruntime quantize {flag} on the export (int8/model_quantized.onnx: dynamic, "
                    "per tensor)"}
    if not is_current(OPTIMUM_DIR, {**stamp, **made}):
        shutil.rmtree(OPTIMUM_DIR, ignore_errors=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        export = str(OPTIMUM_DIR / "export")
        for command in (["export", "onnx", "-m", str(SERVED), "--task", "text-classification", "--trust-remote-code",
                         export],
                        ["onnxruntime", "optimize", "--onnx_model", export, "-O2", "-o", str(OPTIMUM_DIR / "fp32")],
                        ["onnxruntime", "quantize", "--onnx_model", export, flag, "-o", str(OPTIMUM_DIR / "int8")]):
            subprocess.run([cli, *command], check=True, cwd=ROOT, env=env)
        (OPTIMUM_DIR / ".bench-source.json").write_text(json.dumps({**stamp, **made}, indent=1) + "\n")
    return made


def setup_infinity() -> None:
    subprocess.run(["bash", str(BENCH / "infinity_setup.sh")], check=True, cwd=ROOT)


def goldmine_server(name: str, model_dir: Path, state: Path) -> Server:
    """A fresh state dir: the model registered, one predict key whose rate limit never binds here.

    `goldmine` serves with runtime auto (the int8 ONNX export), `goldmine-torch` with runtime torch; the
    batching settings are the same."""
    from goldmine.inference.runtime import resolve_runtime
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
    env = {**GOLDMINE_ENV, **({"GOLDMINE_RUNTIME": "torch"} if name == "goldmine-torch" else {})}
    runtime = "torch" if name == "goldmine-torch" else resolve_runtime(version.path)
    return Server(
        name, [str(Path(sys.executable).with_name("goldmine")), "serve", "--port", str(port)],
        f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}/predict", f"http://127.0.0.1:{port}/readyz",
        env={"GOLDMINE_DATA_DIR": str(state), **env}, headers={"Authorization": f"Bearer {key.key}"},
        describe={"runtime": runtime, "auth": "API key (Bearer)", "metering": "usage record committed per call",
                  "database": "SQLite (WAL, synchronous=FULL)",
                  "compute_threads": f"{compute_workers(None, 1)} batch workers x 1 "
                  f"{'onnxruntime intra-op' if runtime != 'torch' else 'torch intra-op'} thread",
                  "settings": env, "model_version": version.version},
    )


def naive_server(model_dir: Path) -> Server:
    import torch

    port = free_port()
    return Server("naive", [sys.executable, str(BENCH / "serving_naive.py"), str(model_dir), "--port", str(port)],
                  f"http://127.0.0.1:{port}/predict", f"http://127.0.0.1:{port}/healthz",
                  describe={"runtime": "torch (transformers pipeline, one text per call)",
                            "compute_threads": f"torch intra-op {torch.get_num_threads()}",
                            "server": "FastAPI sync endpoint in uvicorn's thread pool"})


def infinity_versions() -> dict:
    python = INFINITY_VENV / "bin" / "python"
    names = ("infinity-emb", "torch", "transformers", "optimum", "onnxruntime")
    code = ("import importlib.metadata as m; print(*(m.version(n) for n in ('infinity_emb', 'torch', 'transformers', "
            "'optimum', 'onnxruntime')))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return dict(zip(names, out, strict=True))


INFINITY_RUNTIMES = {
    "infinity-torch": "torch (infinity-emb torch engine, transformers pipeline per batch)",
    "infinity-torch-int8": "torch int8 (infinity-emb torch engine, --dtype int8: torch dynamic int8 Linear layers)",
    "infinity-optimum": "onnx (infinity-emb optimum engine, optimum's fp32 export optimised with O2, onnxruntime)",
    "infinity-optimum-int8": "onnx-int8 (infinity-emb optimum engine, optimum's dynamic int8 quantization)",
}


def infinity_server(name: str, batch_size: int, work: Path, made: dict | None) -> Server:
    """infinity-emb v2 in one of its CPU configurations (see the module docstring and INFINITY_RUNTIMES)."""
    port = free_port()
    common = ["--served-model-name", MODEL_NAME, "--device", "cpu", "--batch-size", str(batch_size),
              "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    describe: dict = {"runtime": INFINITY_RUNTIMES[name], "batch_size": batch_size, "versions": infinity_versions()}
    cwd = ROOT
    if name.startswith("infinity-torch"):
        engine = ["--model-id", str(SERVED), "--engine", "torch", "--trust-remote-code", "--no-bettertransformer"]
        if name.endswith("int8"):
            engine += ["--dtype", "int8"]
        describe["compute_threads"] = "torch intra-op default (all cores)"
    else:
        cwd = OPTIMUM_DIR / ("int8" if name.endswith("int8") else "fp32")
        engine = ["--model-id", ".", "--engine", "optimum", "--no-model-warmup"]
        describe.update({
            "compute_threads": "onnxruntime intra-op default (all cores), one text per forward pass (infinity "
                               "calls the transformers pipeline on the batch with its default batch_size 1)",
            "model": str(cwd.relative_to(ROOT)), "made_with": made,
            "workarounds": ["--model-id . from the model directory (infinity passes optimum a full file path)",
                            "--no-model-warmup (its optimum classifier does not truncate the 512-token warm-up)",
                            "graph optimised at export (its own optimisation fails with optimum 2.x)"]})
    return Server(
        name, [str(INFINITY_VENV / "bin" / "infinity_emb"), "v2", *engine, *common],
        f"http://127.0.0.1:{port}/classify", f"http://127.0.0.1:{port}/health",
        env={"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1",
             "HF_HUB_CACHE": str(work / f"hf-cache-{name}")},  # infinity caches optimised graphs there, by model path
        describe=describe, cwd=cwd,
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
            return label_of(server.kind, server.post(json.loads(request_body(server.kind, row["text"]))))
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
    command = [sys.executable, __file__, "loadgen", "--url", server.url, "--kind", server.kind, "--data",
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


def build_server(name: str, args, work: Path, made: dict | None) -> Server:
    if name in GOLDMINE_SERVERS:
        return goldmine_server(name, SERVED, work / f"{name}-state")
    if name == "naive":
        return naive_server(SERVED)
    if name.startswith("infinity-optimum") and made is None:
        raise RuntimeError("optimum's ONNX exports for infinity's optimum engine could not be made (see above)")
    return infinity_server(name, args.concurrency, work, made)


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


def run_servers(names: list[str], args, work: Path, data: list[dict], made: dict | None,
                unavailable: dict[str, str]) -> dict:
    """Start every server, load them in interleaved rounds, then check served accuracy and count usage records.

    Interleaving (round r visits the servers in a rotated order) spreads whatever else runs on the machine over
    all servers instead of landing on whichever happened to be measured at the time. A server that cannot start
    (or whose setup failed: `unavailable`) gets a result that says why, and the others are measured.
    """
    servers: dict[str, Server] = {}
    results: dict[str, dict] = {}
    rounds: dict[str, list[dict]] = {}
    live: list[str] = []
    try:
        for name in names:
            print(f"[{name}] starting", flush=True)
            started = time.perf_counter()
            try:
                if name in unavailable:
                    raise RuntimeError(unavailable[name])
                server = build_server(name, args, work, made)
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
            if name in GOLDMINE_SERVERS:
                results[name]["batching"] = batching_summary(servers[name])
                print(f"[{name}] batching: {results[name]['batching']}", flush=True)
            if args.accuracy:
                results[name]["served"] = served_accuracy(servers[name], data)
    finally:
        for server in servers.values():
            server.stop()
    for name in live:
        if name in GOLDMINE_SERVERS:
            usage = count_usage(work / f"{name}-state")
            answered = results[name]["ok_total_including_warmup"] + results[name].get("served", {}).get("answered", 0)
            results[name]["usage"] = {"answered_ok": answered, **usage}
            results[name]["usage_records_lost"] = answered - usage["records"]
        r = results[name]
        print(f"[{name}] {r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
              f"non-200 {r['non_200']}", flush=True)
    return results


def batching_summary(server: Server) -> dict:
    """A goldmine server's forward passes over the whole load (warm-ups included), from its /metrics: how many
    texts a pass held and how long it took on average, which says whether the batch workers or the rest of
    the request path set the pace."""
    metrics_url = server.ready_url.rsplit("/", 1)[0] + "/metrics"
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        return batching_from_metrics(response.read().decode())


def batching_from_metrics(text: str) -> dict:
    """`batching_summary` from the Prometheus text of a goldmine server (every model summed)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = ("goldmine_batch_size_sum", "goldmine_batch_size_count", "goldmine_batch_seconds_sum")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    passes = values.get("goldmine_batch_size_count", 0.0)
    if not passes:
        return {"forward_passes": 0}
    return {"forward_passes": int(passes),
            "texts_per_pass_mean": round(values["goldmine_batch_size_sum"] / passes, 2),
            "pass_ms_mean": round(values["goldmine_batch_seconds_sum"] / passes * 1000, 2)}


def infinity_best(results: dict) -> dict | None:
    """The infinity configuration with the highest requests/s (of those that ran)."""
    ran = [(name, results[name]) for name in INFINITY_SERVERS if (results.get(name) or {}).get("throughput_rps")]
    if not ran:
        return None
    name, best = max(ran, key=lambda item: item[1]["throughput_rps"])
    return {"config": name, "requests_per_s": best["throughput_rps"], "p99_ms": best["p99_ms"],
            "runtime": best["runtime"]}


def summarise(results: dict) -> dict:
    """goldmine (int8 ONNX) against each peer and against the best infinity configuration."""
    g = results.get("goldmine", {})
    peers = {name: results.get(name, {}) for name in ("goldmine-torch", "naive", *INFINITY_SERVERS)}
    if results.get("infinity_best"):
        peers["infinity_best"] = {"throughput_rps": results["infinity_best"]["requests_per_s"],
                                  "p99_ms": results["infinity_best"]["p99_ms"]}
    targets = {}
    for peer, p in peers.items():
        if g.get("throughput_rps") and p.get("throughput_rps"):
            ratio = g["throughput_rps"] / p["throughput_rps"]
            targets[peer] = {"throughput_ratio": round(ratio, 2), "lower_p99": g["p99_ms"] < p["p99_ms"]}
            if peer in TARGETS:
                targets[peer].update(required_ratio=TARGETS[peer],
                                     met=ratio >= TARGETS[peer] and g["p99_ms"] < p["p99_ms"])
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
        f"onnxruntime {m['versions'].get('onnxruntime')}. Commit {results.get('git_commit')}"
        f"{' (with uncommitted changes)' if results.get('git_dirty') else ''}; command `{results.get('command')}`.",
        f"Model: {load['model']} (sst2, MiniLM-L6), a copy of {load['source']}. Load: {load['concurrency']} "
        f"concurrent clients on loopback, one sst2 dev text per request; {load['rounds']} interleaved rounds per "
        f"server of {load['warmup_s']} s warm-up then {load['duration_s']} s measured; client: {load['client']}. "
        f"Every server and the load generator share the machine's {m.get('cores')} cores.",
        "",
        "| server | runtime | req/s | p50 ms | p90 ms | p99 ms | non-200 | server cores busy | client cores busy | "
        "OS threads | dev acc. (served) | usage records lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SERVERS:
        r = results.get(name)
        if r is None:
            continue
        if r.get("error"):
            lines.append(f"| {name} | - | not measured: {r['error']} | | | | | | | | | |")
            continue
        acc = r.get("served", {}).get("dev_accuracy", "-")
        lines.append(f"| {name} | {r['runtime'].split(' (')[0]} | {r['throughput_rps']} | {r['p50_ms']} | "
                     f"{r['p90_ms']} | {r['p99_ms']} | {r['non_200']} | {r['server_cores_busy']} | "
                     f"{r['loadgen_cores_busy']} | {r['server_os_threads']} | {acc} | "
                     f"{r.get('usage_records_lost', '-')} |")
    lines += ["", f"Usage records lost (goldmine servers, 200s answered minus records committed): "
                  f"**{results['usage_records_lost']}**"]
    counts = [f"{name}: {results[name]['usage']['answered_ok']} answered, {results[name]['usage']['records']} "
              "records" for name in GOLDMINE_SERVERS if (results.get(name) or {}).get("usage")]
    if counts:
        lines[-1] += f" ({'; '.join(counts)})."
    best = results.get("infinity_best")
    if best:
        lines += ["", f"Best infinity configuration: **{best['config']}** ({best['requests_per_s']} req/s, p99 "
                      f"{best['p99_ms']} ms); goldmine (int8 ONNX) / it: **{results['speedup_vs_infinity_best']}x**."]
    if results.get("targets"):
        lines += ["", "| goldmine vs | throughput ratio | required | lower p99 | met |", "|---|---:|---:|---|---|"]
        for peer, t in results["targets"].items():
            met = "-" if "met" not in t else ("yes" if t["met"] else "no")
            lines.append(f"| {peer} | {t['throughput_ratio']}x | {t.get('required_ratio', '-')} | "
                         f"{t['lower_p99']} | {met} |")
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
                                       "server", "versions", "made_with", "workarounds") if k in r}
            lines.append(f"- {name}: {r['runtime']}; " + "; ".join(f"{k}: {v}" for k, v in extra.items()))
    if results.get("note"):
        lines += ["", f"Note: {results['note']}"]
    (RESULTS / "serving.md").write_text("\n".join(lines) + "\n")


def prepare_infinity(names: list[str]) -> tuple[dict | None, dict[str, str]]:
    """The infinity venv and, for its optimum engine, optimum's ONNX exports. Returns how the exports were made and
    the configurations that cannot run, each with the reason (they are reported, not silently left out)."""
    unavailable: dict[str, str] = {}
    wanted = [n for n in names if n in INFINITY_SERVERS]
    if not wanted:
        return None, unavailable
    try:
        setup_infinity()
    except subprocess.CalledProcessError as err:
        return None, dict.fromkeys(wanted, f"bench/infinity_setup.sh failed ({err.returncode})")
    if not any(n.startswith("infinity-optimum") for n in wanted):
        return None, unavailable
    try:
        return prepare_optimum(json.loads((SERVED / ".bench-source.json").read_text())), unavailable
    except subprocess.CalledProcessError as err:
        command = shlex.join(str(c) for c in err.cmd)
        reason = f"optimum's ONNX export for the optimum engine failed: {command} -> exit {err.returncode}"
        return None, {n: reason for n in wanted if n.startswith("infinity-optimum")}


def run(args) -> None:
    sys.path.insert(0, str(BENCH))
    from machine import machine_info, provenance

    names = args.only.split(",")
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise SystemExit(f"bench/serving.py: --only {','.join(unknown)}: not a server here; choose from "
                         f"{', '.join(SERVERS)}")
    source = source_model(args.model)
    WORK.mkdir(parents=True, exist_ok=True)
    stamp = prepare_model(source)
    made, unavailable = prepare_infinity(names)
    data = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    work = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    results = run_servers(names, args, work, data, made, unavailable)
    machine = machine_info()
    from importlib.metadata import version

    machine["versions"]["onnxruntime"] = version("onnxruntime")
    machine["versions"]["uvicorn"] = version("uvicorn")
    lost = [results[n]["usage_records_lost"] for n in GOLDMINE_SERVERS if "usage_records_lost" in results.get(n, {})]
    best = infinity_best(results)
    goldmine_rps = results.get("goldmine", {}).get("throughput_rps")

    def shown(path: Path) -> str:
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    results.update({
        "usage_records_lost": sum(lost) if lost else None,
        "infinity_best": best,
        "speedup_vs_infinity_best": round(goldmine_rps / best["requests_per_s"], 2) if best and goldmine_rps
        else None,
    })
    results["targets"] = summarise(results)
    results.update({
        "load": {"concurrency": args.concurrency, "rounds": args.rounds, "warmup_s": args.warmup,
                 "duration_s": args.duration,
                 "texts": f"{args.data.name} ({len(data)} sst2 dev texts, shuffled, one per request)",
                 "model": shown(SERVED), "source": shown(source), "weights_sha256": stamp["weights_sha256"],
                 "client": "asyncio + uvloop, keep-alive HTTP/1.1, one connection per client, separate process"},
        "machine": machine,
        **provenance({"source": shown(source), "served": shown(SERVED),
                      "infinity_optimum": shown(OPTIMUM_DIR) if made else None}),
    })
    if args.note:
        results["note"] = args.note
    print(json.dumps({k: {m: v.get(m) for m in ("throughput_rps", "p50_ms", "p99_ms", "served", "usage_records_lost",
                                                 "error") if m in v}
                      if isinstance(v, dict) and "throughput_rps" in v else v
                      for k, v in results.items() if k != "machine"}, indent=1))
    if args.write:
        write(results)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--only", default=",".join(SERVERS), help=f"comma-separated, of: {', '.join(SERVERS)}")
    parser.add_argument("--model", type=Path, default=None,
                        help="trained sst2 run to serve (copied to runs/bench-serving/sst2); default: the sst2 "
                             "model_dir in bench/results/accuracy.json, else runs/bench/sst2")
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
    gen.add_argument("--kind", choices=KINDS, required=True)
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
