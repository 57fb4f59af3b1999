"""Serving settings: embedded defaults (a SQLite file, in-process limits), overridable by env vars and a config file.

Precedence, highest first: keyword arguments, `GOLDMINE_*` environment variables (nested fields with `__`,
e.g. `GOLDMINE_LIMITS__MAX_ITEMS_PER_CALL=16`), the YAML config file (`load_settings(path)` or
`GOLDMINE_CONFIG=path`), defaults. Money is integer minor units (cents) everywhere, never float.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from goldmine.errors import ConfigError

CONFIG_ENV = "GOLDMINE_CONFIG"
_config_file: ContextVar[Path | None] = ContextVar("goldmine_serving_config_file", default=None)


class Limits(BaseModel):
    """Per-call input limits; beyond them a call is refused with 413 before any work is done."""

    max_items_per_call: int = Field(64, gt=0, description="Texts per predict call.")
    max_chars_per_text: int = Field(2000, gt=0, description="Characters per text.")
    max_body_bytes: int = Field(1_048_576, gt=0, description="Request body size (Content-Length).")


class Batching(BaseModel):
    """Dynamic micro-batching of concurrent requests to one model version."""

    max_batch_size: int = Field(32, gt=0, description="Texts collected into one batch.")
    forward_size: int = Field(4, gt=0, description="Texts per forward pass: a batch runs as length-sorted chunks "
                              "of this many, side by side on the batch workers, so short texts are not padded to "
                              "the longest one of the batch and a caller waits only for its own chunk. Measured "
                              "with bench/serving.py (2 cores, sst2 MiniLM int8, 32 clients, one round each): 1: "
                              "203 requests/s (p99 287 ms), 2: 283 (202), 4: 301 (174), 8: 278 (358).")
    max_wait_ms: float = Field(2.0, ge=0, description="How long the first queued request waits for company.")
    workers: int | None = Field(None, gt=0, description="Worker threads running forward passes side by side (the "
                                "chunks of a batch, and up to this many batches in progress). "
                                "None: one per usable core, each pass on one intra-op thread (unless "
                                "`inference_threads` says otherwise: cores / inference_threads), on onnxruntime and "
                                "torch alike.")
    max_queue: int = Field(1024, gt=0, description="Texts waiting per model before calls get 503 + Retry-After.")


class Generation(BaseModel):
    """Decoder models (`task: causal_lm`) behind /v1/chat/completions and /v1/completions."""

    max_tokens: int = Field(512, gt=0, description="The most tokens one reply may have; a call asking for more "
                            "gets 422.")
    default_max_tokens: int = Field(256, gt=0, description="max_tokens of a call that sets none (capped by "
                                    "max_tokens).")
    max_seconds: float = Field(120.0, gt=0, description="Wall-clock cap on one reply; a reply cut by it ends with "
                               "finish_reason 'length'.")
    max_batch: int = Field(8, gt=0, description="Streams decoded together (continuous batching). On 2 cores 8 rows "
                           "decode about 4x the tokens/s of one (bench/generation.py).")
    max_queue: int = Field(64, gt=0, description="Requests waiting for a place in the batch; more get 503.")
    max_queue_wait_s: float = Field(30.0, gt=0, description="How long a request may wait for a place before it "
                                    "gets 503 + Retry-After.")
    max_n: int = Field(4, gt=0, description="Largest `n` (choices per call).")
    max_prompt_tokens: int = Field(2048, gt=0, description="Longest prompt (after the chat template); longer: 413.")


class PricePlan(BaseModel):
    """A price plan. Amounts are integer minor units of `currency` (cents for EUR/USD)."""

    currency: str = Field("EUR", min_length=3, max_length=3, description="ISO 4217 code.")
    per_call_minor: int = Field(0, ge=0, description="Price of one billable call.")
    per_1k_tokens_minor: int = Field(0, ge=0, description="Price of 1000 input tokens (rounded half-up per line).")
    per_1k_output_tokens_minor: int = Field(0, ge=0, description="Price of 1000 generated tokens (completions; "
                                            "rounded half-up per line).")
    app_per_call_minor: dict[str, NonNegativeInt] = Field(
        default_factory=dict, description="Price of one call of each app, by app name (`goldmine app list`): each "
        "app is its own invoice line. An app not listed costs `per_call_minor` a call. The free tier covers model "
        "calls only.")
    free_calls: int = Field(0, ge=0, description="Calls per month not charged.")
    free_tokens: int = Field(0, ge=0, description="Input tokens per month not charged.")
    per_cpu_hour_minor: int = Field(0, ge=0, description="Price of one CPU-hour of a fine-tuning job (its worker "
                                    "process's CPU time, all threads; rounded half-up per invoice line).")


class Jobs(BaseModel):
    """Uploaded datasets and fine-tuning jobs (`/v1/datasets`, `/v1/jobs`), run by workers over a huey queue."""

    storage_dir: Path | None = Field(None, description="Root of uploaded datasets and job runs, one folder per "
                                     "tenant; default <data_dir>/storage. Nothing is written outside it.")
    max_upload_bytes: int = Field(50_000_000, gt=0, description="Largest dataset file; a larger upload gets 413.")
    max_storage_bytes: int = Field(1_000_000_000, gt=0, description="Dataset bytes one tenant may store; an "
                                   "upload past it gets 413.")
    max_concurrent_jobs: int = Field(2, gt=0, description="Queued plus running jobs per tenant; more get 429.")
    queue_url: str | None = Field(None, description="Where the job queue lives: None = a SQLite file under "
                                  "data_dir (workers on this machine), or redis://host:port/db (workers anywhere).")
    local_worker: bool = Field(True, description="`goldmine serve` starts one worker process beside the API.")
    heartbeat_seconds: float = Field(5.0, gt=0, description="How often a worker renews the lease of its job.")
    lease_seconds: float = Field(60.0, gt=0, description="A running job whose lease was not renewed for this long "
                                 "is given to another worker, which resumes it from its last checkpoint.")
    poll_seconds: float = Field(1.0, gt=0, description="How often an idle worker looks for work and lost jobs.")
    base_models: list[str] = Field(["bundled"], description="Base models (`model.name`) a job may start from.")
    max_attempts: int = Field(3, gt=0, description="Times a job is started (first run plus resumes after lost "
                              "workers) before it is marked failed.")


class FeedbackSettings(BaseModel):
    """The feedback loop (`goldmine.serving.feedback`, `retrain`, `gate`): corrections of answered calls become the
    next version, behind a regression gate, with an automatic rollback when live accuracy drops."""

    record: bool = Field(True, description="Record each answered item of a classification call (label, score, a "
                         "hash of the text; the masked text only for tenants that keep texts) so a feedback can "
                         "refer to it by request_id.")
    retention_days: float = Field(90, gt=0, description="Answered items older than this are deleted (texts "
                                  "included); feedback on them is then 404. Feedback already given is kept.")
    holdout_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the corrections the live version has not "
                                    "trained on that a retrain holds out for the gate (at least one when there are "
                                    "two or more).")
    tolerance: float = Field(0.02, ge=0, le=1, description="Gate: the most accuracy or macro F1 a candidate may lose "
                             "against the live version on the frozen evaluation set.")
    class_tolerance: float = Field(0.05, ge=0, le=1, description="Gate: the most F1 a candidate may lose on any one "
                                   "class of the frozen evaluation set, unless the loss is within that class's "
                                   "sampling noise (`class_confidence`).")
    class_confidence: float = Field(0.95, gt=0.5, lt=1, description="Gate: a class fails only when a paired "
                                    "bootstrap of the frozen set is this sure that its F1 fell by more than "
                                    "`class_tolerance` (one wrong answer among 15 examples of a class moves its F1 "
                                    "by more than 0.05: that alone is noise, not a regression).")
    bootstrap_resamples: int = Field(2000, ge=100, description="Gate: resamples of the paired bootstrap behind "
                                     "`class_confidence`.")
    forgetting_tolerance: float = Field(0.02, ge=0, le=1, description="Gate: the most accuracy a candidate may lose "
                                        "on the original training distribution (a frozen sample of the first "
                                        "promoted version's training data).")
    forgetting_sample: int = Field(500, gt=0, description="Training examples of the first promoted version kept in "
                                   "the frozen set to measure forgetting.")
    auto_promote: bool = Field(False, description="Promote a retrained candidate to production by itself when it "
                               "passes the gate (off: a person runs `goldmine models promote`).")
    rollback_margin: float = Field(0.1, ge=0, le=1, description="Automatic rollback when the live version's accuracy "
                                   "from feedback falls this far below the previous version's.")
    rollback_min_feedback: int = Field(20, gt=0, description="Feedback items each of the two versions needs before "
                                       "their accuracies are compared for the automatic rollback.")


class Drift(BaseModel):
    """Monitoring of what each model version is asked and answers (goldmine.monitoring), per server process."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Count labels, confidence and out-of-scope answers per version and test "
                          "each window of inputs for drift against the version's training data.")
    window_texts: int = Field(1000, ge=2, description="Texts per window: a window closes, is tested and is "
                              "written to the database once it has seen this many.")
    sample_texts: int = Field(200, ge=2, description="Texts of a window embedded for the MMD test (a reservoir "
                              "sample held in memory until the window closes, then dropped).")
    permutations: int = Field(200, ge=10, description="Permutations of the MMD test (its p-value's resolution).")
    alarm_p_value: float = Field(0.01, gt=0, lt=1, description="A window whose MMD p-value is below this raises "
                                 "the drift alarm (goldmine_drift_alarm = 1 until a window passes).")


class Console(BaseModel):
    """The web console at /console (goldmine.console): sign in with an API key, a signed session cookie."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve the console at /console.")
    secret: SecretStr | None = Field(None, description="Key that signs session cookies; None = one generated once "
                                     "and kept in <data_dir>/console_secret. Set it when replicas share the console.")
    session_hours: float = Field(12.0, gt=0, description="A session ends this long after sign-in (or at once when "
                                 "its key is revoked).")


def _default_plans() -> dict[str, PricePlan]:
    return {"default": PricePlan(per_call_minor=0, per_1k_tokens_minor=10, per_1k_output_tokens_minor=20,
                                 free_tokens=100_000)}


class ServingSettings(BaseSettings):
    """Everything `goldmine serve` and the serving CLI commands need."""

    model_config = SettingsConfigDict(env_prefix="GOLDMINE_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(Path("runs/serving"), description="Where the default database and registry live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/goldmine.db.")
    registry_dir: Path | None = Field(None, description="Immutable model version copies; default <data_dir>/models.")
    sqlite_synchronous: str = Field("FULL", pattern="^(FULL|NORMAL|EXTRA)$", description="SQLite fsync level.")
    limits: Limits = Field(default_factory=Limits, description="Per-call input limits.")
    batching: Batching = Field(default_factory=Batching, description="Micro-batching per model version.")
    generation: Generation = Field(default_factory=Generation, description="Decoder models: completions routes.")
    redis_url: str | None = Field(None, description="Shared rate-limit state; None keeps it in-process.")
    redis_prefix: str = Field("goldmine:", description="Namespace of goldmine's keys in Redis.")
    auth_cache_seconds: float = Field(
        2.0, ge=0, description="How long a key that authenticated is trusted without a database look-up (a "
        "revocation takes effect within it); 0 = look up every call.")
    alias_cache_seconds: float = Field(
        1.0, ge=0, description="How long an alias -> version resolution is reused. A promotion through this "
        "server's API applies at once; one made elsewhere (CLI, another replica) within this time. 0 = every call.")
    default_rate: float | None = Field(None, gt=0, description="Requests/s for keys created without --rate.")
    idempotency_ttl_seconds: float = Field(
        86_400, gt=0, description="How long the reply to a call with an Idempotency-Key is kept for replays (NER "
        "replies hold entity text). After it the reply is deleted (within the hour, or within this time if shorter) "
        "and the key may be used again as a new call; the usage record itself stays for billing.")
    log_raw_inputs: bool = Field(False, description="Log input texts (masked: e-mails, phones, card/ID numbers).")
    jobs: Jobs = Field(default_factory=Jobs, description="Datasets and fine-tuning jobs over HTTP.")
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings, description="The feedback loop: "
                                       "corrections, retraining, the regression gate, automatic rollback.")
    drift: Drift = Field(default_factory=Drift, description="Prediction and input-drift monitoring per version.")
    console: Console = Field(default_factory=Console, description="The web console at /console.")
    plans: dict[str, PricePlan] = Field(default_factory=_default_plans, description="Price plans by name.")
    apps: list[Path] = Field(default_factory=list, description="App configs (YAML, one per app and tenant; "
                             "examples in configs/apps/) served under /v1/apps/<app>/ to the tenant each names.")
    default_alias: str = Field("production", description="Alias a predict call uses when it names none.")
    max_loaded_versions: int = Field(4, gt=0, description="Model versions kept in memory (least recently used go).")
    preload: bool = Field(True, description="Load every production version at startup, before /readyz says ready.")
    runtime: Literal["auto", "torch", "onnx", "onnx-int8", "onnx-int4"] = Field(
        "auto", description="Where forward passes run: auto = the fastest current export in each version's "
        "directory (onnx-int8 > onnx > torch; a decoder: of its exports whose parity passed, the one with the most "
        "tokens/s in its parity run, else torch; see "
        "`goldmine export`), or one runtime for every version (a version without that export then fails to load, "
        "with a message saying how to export it).")
    inference_threads: int | None = Field(None, gt=0, description="Threads per forward pass (torch, or onnxruntime "
                                          "intra-op); None = 1 while `batching.workers` is unset (one worker per "
                                          "core), else the usable cores.")
    opentelemetry: bool = Field(False, description="FastAPI's native OpenTelemetry (to globally configured "
                                "providers). Off: the Prometheus metrics and request log cover it, and no request "
                                "pays for the provider checks.")
    host: str = Field("127.0.0.1", description="Bind address for `goldmine serve`.")
    port: int = Field(8000, ge=0, lt=65536, description="Port for `goldmine serve`.")

    @model_validator(mode="after")
    def _derive_paths(self) -> ServingSettings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'goldmine.db'}"
        if self.registry_dir is None:
            self.registry_dir = self.data_dir / "models"
        if self.jobs.storage_dir is None:
            self.jobs.storage_dir = self.data_dir / "storage"
        if "default" not in self.plans:
            raise ValueError("plans: a plan named 'default' is required (tenants start on it)")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, **_unused: PydanticBaseSettingsSource):
        path = _config_file.get() or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @property
    def url(self) -> str:
        assert self.database_url is not None  # set by _derive_paths
        return self.database_url


def load_settings(config_file: str | Path | None = None, **overrides) -> ServingSettings:
    """Settings from `config_file` (YAML) or $GOLDMINE_CONFIG, env vars and `overrides`; errors name the field."""
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise ConfigError(f"{path}: serving config file not found")
    token = _config_file.set(path)
    try:
        return ServingSettings(**overrides)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid serving settings: {problems}") from None
    finally:
        _config_file.reset(token)
