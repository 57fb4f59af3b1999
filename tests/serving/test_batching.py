"""The micro-batcher with a fake batch function: coalescing, order, limits, overload, isolated errors,
draining."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from goldmine.serving.batching import MicroBatcher
from goldmine.serving.errors import Overloaded


class Recorder:
    """A batch function that records batch sizes, can be slowed down or held until released."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[list[str]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.thread_names: set[str] = set()

    def __call__(self, texts: list[str]) -> list[str]:
        self.gate.wait(5)
        self.thread_names.add(threading.current_thread().name)
        time.sleep(self.delay)
        self.batches.append(list(texts))
        return [t.upper() for t in texts]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_concurrent_requests_share_batches_and_keep_order():
    fn = Recorder(delay=0.02)
    sizes = []

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait_ms=20, on_batch=lambda n, s: sizes.append(n))
        out = await asyncio.gather(*(b.submit([f"t{i}a", f"t{i}b"]) for i in range(10)))
        await b.close()
        return out

    out = run(main())
    assert out == [[f"T{i}A", f"T{i}B"] for i in range(10)]
    assert sum(len(b) for b in fn.batches) == 20
    assert max(len(b) for b in fn.batches) <= 8 and len(fn.batches) <= 4  # 20 texts in batches of up to 8
    assert sizes == [len(b) for b in fn.batches]
    assert all(name.startswith("batch-") for name in fn.thread_names)  # off the event loop


def test_a_lone_request_waits_at_most_max_wait():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=64, max_wait_ms=30)
        started = time.perf_counter()
        out = await b.submit(["x"])
        elapsed = time.perf_counter() - started
        await b.close()
        return out, elapsed

    out, elapsed = run(main())
    assert out == ["X"] and 0.025 <= elapsed < 1.0


def test_request_larger_than_a_batch_runs_whole():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=2, max_wait_ms=0)
        out = await b.submit(["a", "b", "c"])
        await b.close()
        return out

    assert run(main()) == ["A", "B", "C"] and fn.batches == [["a", "b", "c"]]


def test_full_queue_is_overloaded_with_retry_after():
    fn = Recorder()
    fn.gate.clear()  # the first batch blocks until released

    async def main():
        b = MicroBatcher(fn, max_batch_size=1, max_wait_ms=0, max_queue=2)
        first = asyncio.ensure_future(b.submit(["a"]))
        await asyncio.sleep(0.05)  # "a" is running (held), the queue is empty
        queued = [asyncio.ensure_future(b.submit([x])) for x in "bc"]
        await asyncio.sleep(0)
        assert b.depth == 2
        with pytest.raises(Overloaded) as err:
            await b.submit(["d"])
        fn.gate.set()
        results = await asyncio.gather(first, *queued)
        await b.close()
        return err.value, results

    err, results = run(main())
    assert int(err.headers["Retry-After"]) >= 1 and "overloaded" in str(err)
    assert results == [["A"], ["B"], ["C"]]


def test_a_failing_request_fails_alone_and_the_worker_survives():
    """A request that makes the batch function fail (a text the tokenizer refuses, say) gets the error; the
    requests that shared its batch run again one by one and get their answers."""
    calls = []

    def picky(texts):
        calls.append(list(texts))
        if "bad" in texts:
            raise ValueError("cannot encode")
        return [t.upper() for t in texts]

    async def main():
        b = MicroBatcher(picky, max_batch_size=8, max_wait_ms=50)
        results = await asyncio.gather(b.submit(["a", "b"]), b.submit(["bad"]), b.submit(["c"]),
                                       return_exceptions=True)
        after = await b.submit(["d"])
        await b.close()
        return results, after

    results, after = run(main())
    assert results[0] == ["A", "B"] and results[2] == ["C"]
    assert isinstance(results[1], ValueError) and str(results[1]) == "cannot encode"
    assert calls[:4] == [["a", "b", "bad", "c"], ["a", "b"], ["bad"], ["c"]]  # one shared batch, then each alone
    assert after == ["D"] and len(calls) == 5


def test_a_request_alone_is_not_run_twice_and_each_failure_stays_its_own():
    calls = []

    def broken(texts):
        calls.append(list(texts))
        raise ValueError(f"no {texts[0]}")

    async def main():
        b = MicroBatcher(broken, max_batch_size=8, max_wait_ms=50)
        alone = await asyncio.gather(b.submit(["x"]), return_exceptions=True)
        shared = await asyncio.gather(b.submit(["y"]), b.submit(["z"]), return_exceptions=True)
        await b.close()
        return alone, shared

    alone, shared = run(main())
    assert [str(e) for e in alone] == ["no x"] and [str(e) for e in shared] == ["no y", "no z"]
    assert calls == [["x"], ["y", "z"], ["y"], ["z"]]


def test_close_drains_queued_requests_then_refuses_new_ones():
    fn = Recorder(delay=0.01)

    async def main():
        b = MicroBatcher(fn, max_batch_size=1, max_wait_ms=0)
        pending = [asyncio.ensure_future(b.submit([str(i)])) for i in range(5)]
        await asyncio.sleep(0)
        await b.close(drain=True)  # returns once every queued request has its result
        assert len(fn.batches) == 5
        with pytest.raises(Overloaded, match="being unloaded"):
            await b.submit(["late"])
        return await asyncio.gather(*pending)

    assert run(main()) == [[str(i)] for i in range(5)]


def test_workers_run_batches_side_by_side():
    running, overlap = [0], [0]
    lock = threading.Lock()

    def fn(texts):
        with lock:
            running[0] += 1
            overlap[0] = max(overlap[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return texts

    async def main():
        b = MicroBatcher(fn, max_batch_size=2, max_wait_ms=0, workers=2)
        out = await asyncio.gather(*(b.submit([str(i)]) for i in range(8)))
        await b.close(drain=True)
        return out

    assert run(main()) == [[str(i)] for i in range(8)] and overlap[0] == 2


def test_close_without_drain_fails_running_and_queued_requests():
    fn = Recorder()
    fn.gate.clear()

    async def main():
        b = MicroBatcher(fn, max_batch_size=1, max_wait_ms=0, workers=2)
        pending = [asyncio.ensure_future(b.submit([x])) for x in "abc"]
        await asyncio.sleep(0.05)  # a and b run (held), c waits
        await b.close(drain=False)
        fn.gate.set()
        return await asyncio.gather(*pending, return_exceptions=True)

    results = run(main())
    assert all(isinstance(r, (asyncio.CancelledError, Overloaded)) for r in results)


def test_one_full_batch_is_cut_into_chunks_that_both_workers_run():
    """Under a closed loop of clients one batch can hold every waiting request: its chunks must run on both
    workers at once, by length, and every caller still gets its own results in order."""
    running, overlap, chunks = [0], [0], []
    lock = threading.Lock()

    def fn(texts):
        with lock:
            running[0] += 1
            overlap[0] = max(overlap[0], running[0])
            chunks.append(list(texts))
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return [t.upper() for t in texts]

    texts = ["a" * n for n in (5, 1, 7, 3, 2, 8, 4, 6)]

    async def main():
        b = MicroBatcher(fn, max_batch_size=64, max_wait_ms=30, workers=2, chunk_size=2)
        out = await asyncio.gather(b.submit(texts[:3]), b.submit(texts[3:]))
        await b.close(drain=True)
        return out

    out = run(main())
    assert out == [[t.upper() for t in texts[:3]], [t.upper() for t in texts[3:]]]
    assert overlap[0] == 2 and all(len(c) == 2 for c in chunks)
    assert sorted(chunks) == [["a", "aa"], ["aaa", "aaaa"], ["aaaaa", "aaaaaa"], ["aaaaaaa", "aaaaaaaa"]]


def test_a_caller_is_answered_when_its_own_chunk_is_done_not_the_whole_batch():
    slow = threading.Event()

    def fn(texts):
        if any(len(t) > 10 for t in texts):  # the chunk of long texts is held until the short caller has its answer
            slow.wait(5)
        return [len(t) for t in texts]

    async def main():
        b = MicroBatcher(fn, max_batch_size=64, max_wait_ms=30, workers=2, chunk_size=1)
        long_call = asyncio.ensure_future(b.submit(["x" * 50]))
        short = await b.submit(["hi"])  # same batch, its own chunk
        answered_first = not long_call.done()
        slow.set()
        out = await long_call
        await b.close(drain=True)
        return short, out, answered_first

    assert run(main()) == ([2], [50], True)


def test_a_failing_chunk_fails_only_its_own_caller():
    """With chunks, a chunk that fails leaves the callers already answered alone and reruns the rest one by one."""

    def picky(texts):
        if "bad" in texts:
            raise ValueError("cannot encode")
        return [t.upper() for t in texts]

    async def main():
        b = MicroBatcher(picky, max_batch_size=8, max_wait_ms=50, workers=2, chunk_size=1)
        results = await asyncio.gather(b.submit(["a", "bb"]), b.submit(["bad"]), b.submit(["cccc"]),
                                       return_exceptions=True)
        await b.close()
        return results

    results = run(main())
    assert results[0] == ["A", "BB"] and results[2] == ["CCCC"]
    assert isinstance(results[1], ValueError)
