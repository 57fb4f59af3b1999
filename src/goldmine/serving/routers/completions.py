"""`POST /v1/chat/completions` and `POST /v1/completions` in the OpenAI API shape, for decoder models.

The official `openai` client works against them: `OpenAI(base_url=".../v1", api_key="gm_...")`. `model` names a
served causal LM as `name` (its production alias) or `name@ref`. Supported: `max_tokens` (or
`max_completion_tokens`), `temperature`, `top_p`, `stop`, `seed`, `n`, `stream` with
`stream_options.include_usage`. Not supported, and refused with 422 rather than ignored (the schema says so):
tools, logprobs, a `response_format` other than text, `echo` and `suffix`. Other OpenAI fields are accepted and
ignored. The server's caps (`max_tokens`, `n`, characters per message) are written into the OpenAPI schema.

Limits: the server caps each reply's tokens (`generation.max_tokens`: asking for more is a 422) and wall time
(`generation.max_seconds`: a reply cut by it ends with finish_reason "length"). Keys, tenants, the request rate
limit, the monthly quota (a call counts as one item) and the key's token rate limit (`tokens_per_minute`: the
prompt plus `n x max_tokens` are taken before decoding, the unused rest given back after) apply as on predict. A
request that finds the decoder's queue full, or waits longer than `generation.max_queue_wait_s` for a place in the
batch, gets 503 with Retry-After.

Metering: prompt and completion tokens are recorded per call (`input_tokens`, `output_tokens`) and billed by the
plan (`per_1k_tokens_minor`, `per_1k_output_tokens_minor`). A non-streaming call is recorded before its answer is
sent. A streaming call's record is written before its first byte and raised to the completion tokens about to be
sent *before* each chunk leaves: a client that disconnects, or a server killed with SIGKILL, leaves a record of
exactly the tokens that reached the wire (at most the chunk in flight more, never fewer).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from goldmine.inference.generation import GenerationRequest, SamplingParams, TokenEvent
from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import InvalidRequest, Overloaded, PayloadTooLarge, error_responses
from goldmine.serving.metering import Usage
from goldmine.serving.routers.predict import resolve_version

router = APIRouter(prefix="/v1", tags=["generation"])

class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="Text, or a list of text parts (other part types: 422).")
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ResponseFormat(BaseModel):
    type: Literal["text"] = Field(description="Only plain text.")


StopString = Annotated[str, StringConstraints(min_length=1)]


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted and ignored, as OpenAI's SDKs send

    model: str = Field(min_length=1, max_length=200, description="A served decoder: 'name' or 'name@ref'.")
    max_tokens: int | None = Field(None, gt=0, description="Tokens per reply at most (default and cap: settings).")
    max_completion_tokens: int | None = Field(None, gt=0, description="The newer name of max_tokens.")
    temperature: float = Field(1.0, ge=0, le=2, description="0: greedy (deterministic).")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    seed: int | None = Field(None, description="The same request with the same seed gets the same reply.")
    n: int = Field(1, ge=1, description="Choices per call (at most generation.max_n).")
    stream: bool = False
    stream_options: StreamOptions | None = Field(None, description="With stream: true; ignored otherwise.")
    user: str | None = Field(None, max_length=256, description="Accepted for compatibility; not stored.")
    logprobs: Literal[False] | None = Field(None, description="Not supported.")
    tools: list[Any] | None = Field(None, max_length=0, description="Function calling is not supported.")
    response_format: ResponseFormat | None = None

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: str = Field(min_length=1, description="The text to continue, as it is (no chat template).")
    echo: Literal[False] = Field(False, description="Not supported.")
    suffix: Literal[""] | None = Field(None, description="Not supported.")


def document_limits(schema: dict, limits, max_chars: int) -> None:
    """Write the generation caps into an OpenAPI schema (they are settings, not constants): max_tokens and n
    maxima, characters per message and prompt. Beyond the character limits a call gets 413, as the routes say."""
    components = schema["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        properties = components[name]["properties"]
        for field in ("max_tokens", "max_completion_tokens"):
            for option in [properties[field], *properties[field].get("anyOf", [])]:
                if option.get("type") == "integer":
                    option["maximum"] = limits.max_tokens
        properties["n"]["maximum"] = limits.max_n
    components["CompletionRequest"]["properties"]["prompt"]["maxLength"] = max_chars
    content = components["ChatMessage"]["properties"]["content"]
    for option in content.get("anyOf", [content]):
        if option.get("type") == "string":
            option["maxLength"] = max_chars
    components["TextPart"]["properties"]["text"]["maxLength"] = max_chars


def prompt_chars(settings) -> int:
    """Characters one message (or a completion prompt) may have: eight texts' worth."""
    return settings.limits.max_chars_per_text * 8


def _sampling(body: _Sampling, limits) -> SamplingParams:
    asked = body.max_completion_tokens or body.max_tokens
    max_tokens = asked if asked is not None else limits.default_max_tokens
    if max_tokens > limits.max_tokens:
        raise InvalidRequest(f"max_tokens: {max_tokens} is over this server's limit of {limits.max_tokens}")
    max_tokens = min(max_tokens, limits.max_tokens)
    if body.n > limits.max_n:
        raise InvalidRequest(f"n: {body.n} choices per call; the limit is {limits.max_n}")
    return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, stop=body.stops(),
                          seed=body.seed, max_seconds=limits.max_seconds)


def _prompt_ids(loaded, body: ChatCompletionRequest | CompletionRequest, max_chars: int) -> list[int]:
    from goldmine.modeling.chat_encoding import render_ids

    tokenizer = loaded.model.task.tokenizer
    if isinstance(body, ChatCompletionRequest):
        messages = []
        for i, message in enumerate(body.messages):
            text = message.text()
            if len(text) > max_chars:
                raise PayloadTooLarge(f"messages[{i}] has {len(text)} characters; the limit is {max_chars}")
            messages.append({"role": "system" if message.role == "developer" else message.role, "content": text})
        return render_ids(tokenizer, messages, generation_prompt=True)
    if len(body.prompt) > max_chars:
        raise PayloadTooLarge(f"prompt has {len(body.prompt)} characters; the limit is {max_chars}")
    return list(tokenizer(body.prompt, add_special_tokens=False)["input_ids"])


class _Choice:
    """One choice of a call: its engine request, and the events the engine sends it, moved onto the event loop."""

    def __init__(self, index: int, prompt: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop):
        self.index = index
        self.events: asyncio.Queue[TokenEvent | Exception] = asyncio.Queue()
        self.started = loop.create_future()
        self.text: list[str] = []
        self.tokens = 0
        self.finish_reason: str | None = None

        def emit(event: TokenEvent) -> None:
            loop.call_soon_threadsafe(self.events.put_nowait, event)

        def on_start() -> None:
            loop.call_soon_threadsafe(lambda: self.started.done() or self.started.set_result(True))

        def on_reject(reason: str) -> None:
            def reject() -> None:
                error = Overloaded(f"no decoding slot: {reason}; retry", {"Retry-After": "1"})
                if not self.started.done():
                    self.started.set_exception(error)
                else:
                    self.events.put_nowait(error)
            loop.call_soon_threadsafe(reject)

        self.request = GenerationRequest(prompt, params, emit, on_start, on_reject)


async def _start(engine, choices: list[_Choice], retry_after: float) -> None:
    """Queue every choice and wait until each has a place in the batch (503 if the queue is full or too slow)."""
    import queue

    try:
        for choice in choices:
            engine.submit(choice.request)
    except queue.Full:
        for choice in choices:
            choice.request.cancel()
        raise Overloaded("the decoder's queue is full; retry", {"Retry-After": str(max(1, math.ceil(retry_after)))}) \
            from None
    try:
        await asyncio.gather(*(choice.started for choice in choices))
    except BaseException:
        for choice in choices:
            choice.request.cancel()
        raise


async def _prepare(body: ChatCompletionRequest | CompletionRequest, request: Request, key, services):
    """Everything before decoding: checks, limits, the loaded decoder and the prompt; returns what the call needs."""
    settings = services.settings
    limits = settings.generation
    params = _sampling(body, limits)
    name, _, ref = body.model.partition("@")
    request.state.log = {**getattr(request.state, "log", {}), "model": name}
    rate = await services.limiter.check_rate(key.id, key.rate or settings.default_rate)
    headers = rate.headers() if rate else {}
    version, path = await resolve_version(services, name, ref or settings.default_alias, key.tenant)
    request.state.metrics_model = name
    loaded = await services.pool.get(name, version, path)
    if loaded.engine is None:
        raise InvalidRequest(f"{name} is a {loaded.model.meta.task} model: completions need a decoder "
                             "(task causal_lm); use /v1/models/{name}/predict")
    prompt = _prompt_ids(loaded, body, prompt_chars(settings))
    if len(prompt) > limits.max_prompt_tokens:
        raise PayloadTooLarge(f"the prompt is {len(prompt)} tokens; the limit is {limits.max_prompt_tokens}")
    reserved = len(prompt) + body.n * params.max_tokens
    await services.limiter.take_tokens(key.id, key.tokens_per_minute, reserved)
    return name, version, loaded, prompt, params, headers, reserved


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def _complete(kind: str, body, request: Request, key, services) -> JSONResponse | StreamingResponse:
    started = time.perf_counter()
    name, version, loaded, prompt, params, headers, reserved = await _prepare(body, request, key, services)
    settings = services.settings
    request_id = request.state.request_id
    chat = kind == "chat"
    created = int(time.time())
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{request_id}"
    loop = asyncio.get_running_loop()
    choices = [_Choice(i, prompt, SamplingParams(**{**params.__dict__, "seed": None if params.seed is None
                                                    else params.seed + i}), loop) for i in range(body.n)]
    try:
        await services.limiter.reserve_quota(key.id, key.monthly_quota, 1)
    except BaseException:
        await services.limiter.return_tokens(key.id, key.tokens_per_minute, reserved)
        raise
    try:
        await _start(loaded.engine, choices, settings.generation.max_queue_wait_s)
    except BaseException:
        await services.limiter.release_quota(key.id, 1)
        await services.limiter.return_tokens(key.id, key.tokens_per_minute, reserved)
        raise

    async def settle(completion_tokens: int) -> None:  # give back the token reservation's unused rest
        await services.limiter.return_tokens(key.id, key.tokens_per_minute,
                                             reserved - len(prompt) - completion_tokens)

    async def abandon() -> None:  # nothing was sent: stop decoding, bill nothing, give back quota and tokens
        for choice in choices:
            choice.request.cancel()
        await services.limiter.release_quota(key.id, 1)
        await settle(0)

    def usage(completion_tokens: int) -> Usage:
        return Usage(request_id=request_id, tenant=key.tenant, key_id=key.id, model=name, version=version, items=1,
                     input_tokens=len(prompt), output_tokens=completion_tokens,
                     latency_ms=round((time.perf_counter() - started) * 1000, 3))

    if not body.stream:
        try:
            for choice in choices:
                while choice.finish_reason is None:
                    event = await choice.events.get()
                    if isinstance(event, Exception):
                        raise event
                    choice.text.append(event.text)
                    choice.tokens += event.tokens
                    choice.finish_reason = event.finish_reason
            completion = sum(c.tokens for c in choices)
            await services.meter.record(usage(completion))
        except BaseException:
            await abandon()
            raise
        await settle(completion)
        services.metrics.tokens.labels(name).inc(len(prompt) + completion)
        content = {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
                   "model": body.model, "system_fingerprint": version,
                   "choices": [_final_choice(c, chat) for c in choices], "usage": _usage(len(prompt), completion)}
        return JSONResponse(content, headers={**headers, "X-Model-Version": version})

    # streaming: the record exists before the first byte, and covers each chunk before it is sent
    try:
        await services.meter.record(usage(0))
    except BaseException:
        await abandon()
        raise
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = _stream(choices, chat, ident, created, body.model, version, len(prompt), include_usage,
                     lambda sent: services.meter.raise_output_tokens(request_id, sent,
                                                                     round((time.perf_counter() - started) * 1000, 3)),
                     settle, lambda n: services.metrics.tokens.labels(name).inc(n))
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={**headers, "X-Model-Version": version, "Cache-Control": "no-cache"})


def _final_choice(choice: _Choice, chat: bool) -> dict[str, Any]:
    text = "".join(choice.text)
    if chat:
        return {"index": choice.index, "message": {"role": "assistant", "content": text},
                "finish_reason": choice.finish_reason, "logprobs": None}
    return {"index": choice.index, "text": text, "finish_reason": choice.finish_reason, "logprobs": None}


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _stream(choices: list[_Choice], chat: bool, ident: str, created: int, model: str, version: str,
                  prompt_tokens: int, include_usage: bool, commit, settle, count) -> AsyncIterator[bytes]:
    """Server-sent events: each round takes every event waiting on any choice, commits the new token count,
    then sends the chunks. `commit(total)` raises the usage record; a failed commit ends the stream there."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    sent = 0
    waiters: dict[int, asyncio.Task] = {}

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> bytes:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else (
                {"content": text} if text else {})
            entry = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            entry = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        return _sse({"id": ident, "object": kind, "created": created, "model": model, "system_fingerprint": version,
                     "choices": [entry]})

    try:
        if chat:
            for choice in choices:
                yield chunk(choice.index, None, None, first=True)
        pending = list(choices)
        while pending:
            for choice in pending:
                if choice.index not in waiters:
                    waiters[choice.index] = asyncio.ensure_future(choice.events.get())
            await asyncio.wait(waiters.values(), return_when=asyncio.FIRST_COMPLETED)
            batch: list[tuple[_Choice, TokenEvent]] = []
            for choice in list(pending):
                task = waiters.get(choice.index)
                if task is None or not task.done():
                    continue
                del waiters[choice.index]
                events = [task.result()]
                while not choice.events.empty():
                    events.append(choice.events.get_nowait())
                for event in events:
                    if isinstance(event, Exception):
                        raise event
                    batch.append((choice, event))
                    if event.finish_reason is not None:
                        choice.finish_reason = event.finish_reason
                        pending.remove(choice)
                        break
            new_tokens = sum(event.tokens for _, event in batch)
            if new_tokens:
                await commit(sent + new_tokens)  # billed before it is sent
                sent += new_tokens
                count(new_tokens)
            out = []
            for choice, event in batch:
                choice.tokens += event.tokens
                if event.text:
                    out.append(chunk(choice.index, event.text, None))
                if event.finish_reason is not None:
                    out.append(chunk(choice.index, None, event.finish_reason))
            if out:
                yield b"".join(out)
        if include_usage:
            yield _sse({"id": ident, "object": kind, "created": created, "model": model,
                        "system_fingerprint": version, "choices": [], "usage": _usage(prompt_tokens, sent)})
        yield b"data: [DONE]\n\n"
    finally:
        for choice in choices:
            choice.request.cancel()
        for task in waiters.values():
            task.cancel()
        await settle(sent)


@router.post("/chat/completions", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def chat_completions(body: ChatCompletionRequest, request: Request, key: PredictKey,
                           services: ServicesDep) -> Any:
    """The assistant's reply to a conversation, from a served decoder, in the OpenAI API shape (SSE with
    `stream: true`)."""
    return await _complete("chat", body, request, key, services)


@router.post("/completions", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def completions(body: CompletionRequest, request: Request, key: PredictKey, services: ServicesDep) -> Any:
    """The continuation of a prompt (no chat template), from a served decoder, in the OpenAI API shape."""
    return await _complete("text", body, request, key, services)
