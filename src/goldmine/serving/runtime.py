"""Loaded model versions: each with its own micro-batcher, loaded on first use, least recently used unloaded.

Versions are immutable, so a loaded version never goes stale; what changes is which version an alias points
to, and that is read from the database (at most `alias_cache_seconds` old: a promotion through this server's
admin API applies at once, one made elsewhere within that time). A hot swap is: load the new version, move
the alias, then `retire` the versions no alias uses any more; their batchers drain in the background, so
requests already queued on them are answered (by the old version, as their responses say).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from goldmine.inference.generation import DecodeEngine
from goldmine.inference.model import Model, RunMeta
from goldmine.inference.runtime import available_cores
from goldmine.serving.batching import MicroBatcher
from goldmine.serving.metrics import Metrics
from goldmine.serving.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    name: str
    version: str
    model: Model
    batcher: MicroBatcher
    engine: DecodeEngine | None = None  # decoders (task causal_lm): continuous batching for the completions routes
    last_used: float = field(default_factory=time.monotonic)


def batch_function(model: Model):
    """`items -> [(prediction, input_tokens)]`: what a batcher runs in its thread.

    An item is a text, or a (text, text_b) pair for a pair model (a batch holds one kind: the route checks each
    request against the model before it is queued). The input tokens billed are the lengths of the encodings
    the network ran on (`Model.predict_counted`).
    """

    def run(items: list) -> list[tuple[dict, int]]:
        if items and isinstance(items[0], tuple):
            return model.predict_counted([a for a, _ in items], [b for _, b in items])
        return model.predict_counted(items)

    return run


def compute_workers(workers: int | None, threads: int | None) -> int:
    """Batches a version runs at once. Unset, every runtime (onnxruntime, torch, an ensemble of both) gets one per
    usable core with single-threaded passes: small forward passes of a few texts gain little from a second thread,
    and two passes side by side also overlap the batch's tokenising and decoding. For torch the app sets its
    intra-op pool to one thread then, because a pool as wide as the machine fights the event loop's thread for
    the cores. Measured with `bench/serving.py` on 2 cores (sst2 MiniLM, 32 clients): one worker on torch's
    2-thread pool answered 12-16 requests/s, a tenth of what the same forward passes do outside the server."""
    if workers is not None:
        return workers
    return max(1, available_cores() // (threads or 1))


class ModelPool:
    def __init__(self, settings: ServingSettings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._draining: set[asyncio.Task] = set()

    @property
    def loaded(self) -> list[tuple[str, str]]:
        return list(self._loaded)

    async def get(self, name: str, version: str, path: str) -> LoadedModel:
        """The loaded version (loading it in a thread the first time; concurrent callers wait for one load)."""
        key = (name, version)
        current = self._loaded.get(key)
        if current is None:
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                current = self._loaded.get(key)
                if current is None:
                    current = await self._load(name, version, path)
        current.last_used = time.monotonic()
        return current

    async def _load(self, name: str, version: str, path: str) -> LoadedModel:
        started = time.perf_counter()
        b = self.settings.batching
        threads = self.settings.inference_threads or (1 if b.workers is None else None)
        decoder = RunMeta.load(Path(path)).task == "causal_lm"
        model = await asyncio.to_thread(Model.load, path, b.forward_size,
                                        runtime="torch" if decoder else self.settings.runtime, threads=threads)
        workers = compute_workers(b.workers, threads)
        label = f"{name}@{version}"
        batcher = MicroBatcher(
            batch_function(model), b.max_batch_size, b.max_wait_ms, b.max_queue, name=label,
            on_batch=lambda n, s: (self.metrics.batch_size.labels(name).observe(n),
                                   self.metrics.batch_seconds.labels(name).observe(s)),
            on_depth=lambda n: self.metrics.queue_depth.labels(name).set(n), workers=workers,
            chunk_size=b.forward_size,
        )
        engine = None
        if decoder:
            engine = await asyncio.to_thread(self._engine, model, Path(path), label)
        loaded = LoadedModel(name, version, model, batcher, engine)
        self._loaded[(name, version)] = loaded
        log.info("loaded %s on %s (%d batch worker(s)) in %.1fs", label, model.runtime, workers,
                 time.perf_counter() - started)
        while len(self._loaded) > self.settings.max_loaded_versions:
            oldest = min(self._loaded.values(), key=lambda m: m.last_used)
            self._unload(oldest)
        self.metrics.loaded_versions.set(len(self._loaded))
        return loaded

    def _engine(self, model: Model, path: Path, label: str) -> DecodeEngine:
        """A decoder's engine on the runtime the settings ask for: auto = the fastest decoder export whose parity
        gate passed (`goldmine export --quantize int4,int8`), else torch."""
        from goldmine.export.decoder import served_graph

        g = self.settings.generation
        threads = self.settings.inference_threads or available_cores()
        graph = served_graph(path, self.settings.runtime)
        runtime = model.network
        if graph is not None:
            from goldmine.inference.onnx_decoder import OnnxDecoder

            runtime = OnnxDecoder(graph, threads=threads)
        log.info("%s decodes on %s", label, getattr(runtime, "name", "torch"))
        return DecodeEngine(runtime, model.task.tokenizer, max_batch=g.max_batch, max_queue=g.max_queue,
                            max_queue_wait_s=g.max_queue_wait_s, threads=threads, name=label)

    def _unload(self, loaded: LoadedModel) -> None:
        self._loaded.pop((loaded.name, loaded.version), None)
        task = asyncio.get_running_loop().create_task(self._close(loaded))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        self.metrics.loaded_versions.set(len(self._loaded))
        log.info("unloading %s@%s (in-flight requests drain first)", loaded.name, loaded.version)

    async def _close(self, loaded: LoadedModel) -> None:
        await loaded.batcher.close(drain=True)
        if loaded.engine is not None:  # streams in progress end first, as queued predict calls do (bounded)
            g = self.settings.generation
            deadline = time.monotonic() + g.max_seconds + g.max_queue_wait_s
            while (loaded.engine.active or loaded.engine.waiting) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.to_thread(loaded.engine.close)

    def retire(self, name: str, keep: Iterable[str]) -> None:
        """Unload versions of `name` not in `keep`; their queued requests are still answered."""
        keep = set(keep)
        for loaded in [m for (n, v), m in self._loaded.items() if n == name and v not in keep]:
            self._unload(loaded)

    async def close(self) -> None:
        for loaded in list(self._loaded.values()):
            self._unload(loaded)
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
