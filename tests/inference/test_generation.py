"""The continuous-batching decoder: rows that share forward passes decode exactly what each decodes alone (and
what transformers' `generate` decodes), requests join and leave a running batch, stop strings are never sent,
seeds reproduce samples, and a request that waits too long is turned away."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from goldmine.inference.generation import DecodeEngine, GenerationRequest, SamplingParams, TokenEvent

WORDS = ["hi", "how can i help", "where is my parcel it ships today", "you are kind", "great film", "awful"]


@pytest.fixture(scope="module")
def decoder(tiny_decoder_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_decoder_dir)
    network = AutoModelForCausalLM.from_pretrained(tiny_decoder_dir).eval()
    return network, tokenizer


@pytest.fixture
def engine(decoder):
    network, tokenizer = decoder
    engine = DecodeEngine(network, tokenizer, max_batch=4, threads=1)
    yield engine
    engine.close()


def prompt(tokenizer, text: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                         add_generation_prompt=True, return_dict=False)


def reference(network, tokenizer, ids: list[int], max_new: int) -> list[int]:
    with torch.inference_mode():
        out = network.generate(torch.tensor([ids]), max_new_tokens=max_new, do_sample=False,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    reply = out[0, len(ids):].tolist()
    return reply[:reply.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in reply else reply


class Collector:
    """A request whose events are kept, with an event set when it ends."""

    def __init__(self, ids: list[int], params: SamplingParams):
        self.events: list[TokenEvent] = []
        self.rejected: list[str] = []
        self.done = threading.Event()
        self.request = GenerationRequest(ids, params, self.emit, on_reject=self.reject)

    def emit(self, event: TokenEvent) -> None:
        self.events.append(event)
        if event.finish_reason is not None:
            self.done.set()

    def reject(self, reason: str) -> None:
        self.rejected.append(reason)
        self.done.set()

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events)


def test_rows_decoded_together_equal_transformers_generate_of_each_alone(decoder, engine):
    network, tokenizer = decoder
    prompts = [prompt(tokenizer, text) for text in WORDS]  # six lengths, four rows at most: rows leave and join
    replies = engine.generate(prompts, SamplingParams(max_tokens=12))
    assert replies == [reference(network, tokenizer, ids, 12) for ids in prompts]
    assert engine.rows_per_step > 1  # they did share forward passes


def test_a_request_joins_a_batch_already_decoding(decoder, engine):
    network, tokenizer = decoder
    first, second = prompt(tokenizer, WORDS[2]), prompt(tokenizer, WORDS[0])
    long_one = Collector(first, SamplingParams(max_tokens=60))
    engine.submit(long_one.request)
    while not long_one.events:  # the first row is decoding
        time.sleep(0.001)
    late = Collector(second, SamplingParams(max_tokens=10))
    engine.submit(late.request)
    assert long_one.done.wait(30) and late.done.wait(30)
    assert long_one.request.reply_ids == reference(network, tokenizer, first, 60)
    assert late.request.reply_ids == reference(network, tokenizer, second, 10)


def test_events_account_for_every_token_and_end_with_a_reason(decoder, engine):
    _, tokenizer = decoder
    collected = Collector(prompt(tokenizer, WORDS[1]), SamplingParams(max_tokens=7))
    engine.submit(collected.request)
    assert collected.done.wait(30)
    assert sum(e.tokens for e in collected.events) == len(collected.request.reply_ids)
    assert collected.events[-1].finish_reason in ("stop", "length")
    assert collected.text == tokenizer.decode(collected.request.reply_ids, skip_special_tokens=True)


def test_a_stop_string_ends_the_reply_and_is_never_sent(decoder, engine):
    _, tokenizer = decoder
    ids = prompt(tokenizer, WORDS[3])
    free = engine.generate([ids], SamplingParams(max_tokens=20))[0]
    words = tokenizer.decode(free, skip_special_tokens=True).split()
    assert len(words) >= 4, "the tiny model should ramble for this test"
    stop = " ".join(words[2:4])  # a two-word stop string met in the middle of the free reply
    collected = Collector(ids, SamplingParams(max_tokens=20, stop=(stop,)))
    engine.submit(collected.request)
    assert collected.done.wait(30)
    full = tokenizer.decode(free, skip_special_tokens=True)
    assert collected.text == full[:full.find(stop)]
    assert collected.events[-1].finish_reason == "stop"
    assert all(stop not in "".join(e.text for e in collected.events[: i + 1]) for i in range(len(collected.events)))


def test_a_seed_reproduces_a_sampled_reply(decoder, engine):
    _, tokenizer = decoder
    ids = prompt(tokenizer, WORDS[4])
    params = SamplingParams(max_tokens=15, temperature=1.5, seed=7)
    first = engine.generate([ids], params)[0]
    assert engine.generate([ids], params)[0] == first
    others = [engine.generate([ids], SamplingParams(max_tokens=15, temperature=1.5, seed=s))[0] for s in (8, 9, 10)]
    assert any(o != first for o in others)


def test_cancelled_rows_leave_and_the_others_finish(decoder, engine):
    network, tokenizer = decoder
    ids = prompt(tokenizer, WORDS[2])
    gone = Collector(ids, SamplingParams(max_tokens=200))
    kept = Collector(prompt(tokenizer, WORDS[1]), SamplingParams(max_tokens=30))
    engine.submit(gone.request)
    engine.submit(kept.request)
    while not gone.events:
        time.sleep(0.001)
    gone.request.cancel()
    assert gone.done.wait(30) and kept.done.wait(30)
    assert gone.events[-1].finish_reason in ("cancelled", "stop", "length")
    assert kept.request.reply_ids == reference(network, tokenizer, prompt(tokenizer, WORDS[1]), 30)


def test_a_request_that_waits_too_long_for_a_row_is_turned_away(decoder):
    network, tokenizer = decoder
    slow = DecodeEngine(network, tokenizer, max_batch=1, max_queue_wait_s=0.05, threads=1)
    try:
        busy = Collector(prompt(tokenizer, WORDS[2]), SamplingParams(max_tokens=100_000, max_seconds=1.0))
        slow.submit(busy.request)
        while not busy.events:
            time.sleep(0.001)
        waiting = Collector(prompt(tokenizer, WORDS[0]), SamplingParams(max_tokens=5))
        slow.submit(waiting.request)
        assert waiting.done.wait(10)
        assert waiting.rejected and "waited" in waiting.rejected[0]
        assert busy.done.wait(10) and busy.events[-1].finish_reason == "length"  # the time cap ended it
    finally:
        slow.close()
