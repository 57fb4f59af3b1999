"""Dynamic micro-batching: concurrent requests to one model version share forward passes.

Each request (a list of texts) waits in a queue. One collector task takes the first request, gathers more
until the batch holds `max_batch_size` texts or `max_wait_ms` has passed, and runs the batch function in
worker threads, so the event loop keeps accepting requests. A batch larger than `chunk_size` is cut, by text
length, into chunks of that many texts, and the `workers` threads run the chunks side by side (on a 2-core
machine: two single-threaded forward passes at once keep both cores busy with less synchronisation than one
two-threaded pass). Cutting the batch matters more than it looks: under a closed loop of clients (each waits
for its answer before it sends again) one full batch can hold every waiting request, and run whole in one
thread it left the other core idle. Measured with `bench/serving.py` on 2 cores (sst2 MiniLM int8, 32
clients): whole batches per thread kept 1.06 workers busy on average (about 185 requests/s). Up to
`workers` batches are in progress at once; while they run, the next batch fills up by itself, so under load
batches are full without waiting. The queue is bounded in texts: beyond `max_queue` a
call fails at once with `Overloaded` (503 + Retry-After) instead of queueing into unbounded latency.

A failure belongs to the request that caused it: when a batch of several requests fails, each request is run
again alone, so one caller's bad input costs the others a second pass, not their answers.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from goldmine.serving.errors import Overloaded

R = TypeVar("R")
T = TypeVar("T")


@dataclass
class _Request:
    texts: Sequence[str | tuple[str, str]]  # texts, or (text, text_b) pairs for a pair model
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[R]):
    """Coalesces `submit(texts)` calls into batched calls of `fn(texts) -> results` (one result per text).

    Args:
        fn: runs one batch, in a worker thread; returns one result per text, in order.
        max_batch_size: texts per batch (a single larger request runs alone, whole).
        max_wait_ms: how long the first request of a batch waits for others.
        max_queue: texts allowed to wait; more gives `Overloaded`.
        workers: threads calling `fn`, and batches that may be in progress at once.
        chunk_size: texts per call of `fn` (a forward pass); a larger batch is cut into length-sorted chunks
            that the workers run side by side. None: the whole batch in one call.
        on_batch: called with (texts, seconds) after each call of `fn` (metrics: one forward pass).
        on_depth: called with the number of waiting texts whenever it changes (metrics).
    """

    def __init__(self, fn: Callable[[list[str]], list[R]], max_batch_size: int = 32, max_wait_ms: float = 2.0,
                 max_queue: int = 1024, name: str = "model", on_batch: Callable[[int, float], Any] | None = None,
                 on_depth: Callable[[int], Any] | None = None, workers: int = 1, chunk_size: int | None = None):
        self.fn = fn
        self.workers = workers
        self.chunk_size = chunk_size
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.name = name
        self._on_batch = on_batch or (lambda n, s: None)
        self._on_depth = on_depth or (lambda n: None)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._carry: _Request | None = None
        self._waiting = 0  # texts queued, not yet in a running batch
        self._in_flight = 0  # requests submitted and not yet answered
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"batch-{name}")
        self._worker: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()  # batches in their threads
        self._seconds_per_batch = 0.05  # running estimate, for Retry-After

    @property
    def depth(self) -> int:
        return self._waiting

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def submit(self, texts: Sequence[str | tuple[str, str]]) -> list[R]:
        """The results for `texts`, computed in some batch. Raises `Overloaded` when the queue is full."""
        if self._closing:
            raise Overloaded(f"model {self.name} is being unloaded; retry", {"Retry-After": "1"})
        if self._waiting + len(texts) > self.max_queue and self._waiting > 0:
            raise Overloaded(f"model {self.name} is overloaded ({self._waiting} texts queued); retry later",
                             {"Retry-After": str(self.retry_after())})
        self.start()
        request = _Request(list(texts), asyncio.get_running_loop().create_future())
        self._waiting += len(texts)
        self._in_flight += 1
        self._on_depth(self._waiting)
        self._queue.put_nowait(request)
        try:
            return await asyncio.shield(request.future)  # a client that goes away does not break the batch
        finally:
            self._in_flight -= 1

    async def run_alone(self, call: Callable[[], T]) -> T:
        """Run `call` on one of the workers, outside any batch: for a request that cannot share a forward pass
        (a zero-shot call with labels of its own). It takes a worker as a batch does, so the cores stay shared."""
        if self._closing:
            raise Overloaded(f"model {self.name} is being unloaded; retry", {"Retry-After": "1"})
        self._in_flight += 1
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, call)
            return await asyncio.shield(future)
        finally:
            self._in_flight -= 1

    def retry_after(self) -> int:
        """Seconds until the current queue has probably drained (at least 1)."""
        batches = math.ceil(self._waiting / self.max_batch_size) + 1
        return max(1, math.ceil(batches * self._seconds_per_batch / self.workers))

    async def _next(self, timeout: float | None) -> _Request | None:
        if self._carry is not None:
            request, self._carry = self._carry, None
            return request
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Request]:
        first = await self._next(None)
        batch, size = [first], len(first.texts)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch_size:
            request = await self._next(deadline - time.perf_counter())
            if request is None:
                break
            if request is _STOP or size + len(request.texts) > self.max_batch_size:
                self._carry = request  # first in the next batch
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.workers)
        try:
            while True:
                await slots.acquire()  # a worker is free: collect the next batch for it
                batch = await self._collect()
                if batch[0] is _STOP:
                    return
                task = asyncio.get_running_loop().create_task(self._execute(batch))
                self._running.add(task)
                task.add_done_callback(lambda t: (self._running.discard(t), slots.release()))
        finally:
            if self._running:  # drained (or cancelled): running batches finish (or fail) before the worker ends
                await asyncio.gather(*self._running, return_exceptions=True)

    async def _forward(self, texts: list, on_chunk: Callable[[list[int], list], Any] | None = None) -> list[R]:
        """The results for a batch: `fn` over its chunks in the worker threads, side by side, in the texts' order.
        `on_chunk(indices, results)` hears of each chunk as it finishes, with the batch's results so far (filled
        at least at `indices`), so its callers need not wait for the batch's longest texts. Timed for
        Retry-After (per batch) and the metrics (per call of `fn`)."""
        started = time.perf_counter()
        if self.chunk_size is None or len(texts) <= self.chunk_size:
            chunks = [list(range(len(texts)))]
        else:
            order = sorted(range(len(texts)), key=lambda i: _length(texts[i]))  # similar lengths pad little
            chunks = [order[i : i + self.chunk_size] for i in range(0, len(order), self.chunk_size)]
        results: list = [None] * len(texts)

        async def run(chunk: list[int]) -> None:
            output = await self._call([texts[i] for i in chunk])
            for i, result in zip(chunk, output, strict=True):
                results[i] = result
            if on_chunk is not None:
                on_chunk(chunk, results)

        await asyncio.gather(*(run(chunk) for chunk in chunks))
        self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * (time.perf_counter() - started)
        return results

    async def _call(self, texts: list) -> list[R]:
        """`fn(texts)` in a worker thread: one forward pass, timed in its thread (not its wait for a thread)."""
        results, seconds = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, texts)
        if len(results) != len(texts):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(texts)} texts")
        self._on_batch(len(texts), seconds)
        return results

    def _timed(self, texts: list) -> tuple[list[R], float]:
        started = time.perf_counter()
        return self.fn(texts), time.perf_counter() - started

    async def _execute(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        self._waiting -= len(texts)
        self._on_depth(self._waiting)
        owner = [k for k, r in enumerate(batch) for _ in r.texts]  # the request each text of the batch belongs to
        starts = list(itertools.accumulate((len(r.texts) for r in batch), initial=0))  # where its texts begin
        missing = [len(r.texts) for r in batch]

        def answer(chunk: list[int], results: list) -> None:  # a request is answered once all its texts are
            for i in chunk:
                k = owner[i]
                missing[k] -= 1
                if missing[k] == 0 and not batch[k].future.done():
                    batch[k].future.set_result(results[starts[k] : starts[k + 1]])

        try:
            await self._forward(texts, answer)
        except asyncio.CancelledError as err:  # shutting down without drain: every waiting caller gets it
            _fail(batch, err)
            raise
        except BaseException as err:  # noqa: BLE001 - a caller, not the worker, gets the error
            unanswered = [r for r in batch if not r.future.done()]
            if len(batch) == 1:
                _fail(unanswered, err)
            else:
                await self._one_by_one(unanswered)

    async def _one_by_one(self, batch: list[_Request]) -> None:
        """After a failed batch, run each request alone: only the request that makes `fn` fail (a text the
        tokenizer refuses, say) gets the error; the callers who happened to share its batch get their answers."""
        for i, r in enumerate(batch):
            try:
                results = await self._forward(list(r.texts))
            except asyncio.CancelledError as err:
                _fail(batch[i:], err)
                raise
            except BaseException as err:  # noqa: BLE001 - this caller gets its own error
                _fail([r], err)
            else:
                if not r.future.done():
                    r.future.set_result(results)

    async def close(self, drain: bool = True) -> None:
        """Stop taking requests; with `drain`, answer every queued request first (hot swap), else fail them."""
        self._closing = True
        if self._worker is not None:
            if drain:
                self._queue.put_nowait(_STOP)
                await self._worker
            else:
                for task in (self._worker, *self._running):
                    task.cancel()
                while not self._queue.empty():
                    request = self._queue.get_nowait()
                    if request is not _STOP and not request.future.done():
                        request.future.set_exception(Overloaded("server shutting down", {"Retry-After": "1"}))
        self._executor.shutdown(wait=drain)


def _length(item: str | tuple[str, str]) -> int:
    return len(item) if isinstance(item, str) else sum(len(text) for text in item)


def _fail(requests: list[_Request], err: BaseException) -> None:
    for r in requests:
        if not r.future.done():
            r.future.set_exception(err)


_STOP = _Request(texts=[], future=None)  # type: ignore[arg-type]  # sentinel: the worker ends when it reaches it
