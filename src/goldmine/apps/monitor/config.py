"""The monitor's config: its models, the company alias table, the time windows, the alert rules and the sinks.

One YAML file per tenant (`configs/apps/monitor.yaml` is an example). Rules are data, not code: a customer adds
or tunes one by editing the file. Durations are written `15m`, `1h`, `1d`, `7d`; windows are tumbling and aligned
to the Unix epoch in UTC (a `1d` window is a UTC calendar day).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from goldmine.apps.base import AppConfig, ModelRef
from goldmine.errors import ConfigError

POLARITIES = ("negative", "neutral", "positive")
POLARITY_VALUE = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}
DEFAULT_LABEL_MAP = {"negative": "negative", "neutral": "neutral", "positive": "positive", "bearish": "negative",
                     "bullish": "positive", "neg": "negative", "neu": "neutral", "pos": "positive"}
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration_seconds(value: str) -> int:
    """`15m` -> 900. Raises ValueError for anything else."""
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{value!r} is not a duration like 15m, 1h, 1d or 7d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


Duration = Annotated[str, Field(pattern=r"^[1-9]\d*[smhd]$", description="A duration: 30s, 15m, 1h, 1d, 7d.")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MonitorModels(_Section):
    sentiment: ModelRef = Field(description="A goldmine classification model whose labels map to negative, neutral "
                                "and positive (see label_map).")
    ner: ModelRef | None = Field(None, description="Optional NER model: its entities of `ner_types` are companies "
                                 "too (matched against the alias table, else kept under their own name).")


class Company(_Section):
    tickers: list[str] = Field(default_factory=list, description="Ticker symbols (matched in an item's tickers and "
                               "as $CASHTAGS in its text).")
    aliases: list[str] = Field(default_factory=list, description="Names matched in the text as whole words, "
                               "ignoring case (the company's own name always is).")


class NegativeShareRule(_Section):
    """Fires when, in one window, at least `min_items` items mention the company and the share of negative ones
    reaches `threshold`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Rule name, shown in alerts.")
    kind: Literal["negative_share"] = "negative_share"
    window: Duration = Field("1d", description="The window the share is counted in.")
    threshold: float = Field(gt=0, le=1, description="Share of negative items that fires the rule.")
    min_items: int = Field(5, ge=1, description="Items in the window before the rule can fire.")


class ZScoreRule(_Section):
    """Fires when a window's `metric` lies `k` standard deviations or more from the company's baseline: the mean
    and standard deviation of the metric over the non-empty windows in the `baseline` windows before it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Rule name, shown in alerts.")
    kind: Literal["zscore"] = "zscore"
    window: Duration = Field("1d", description="The window the metric is measured in.")
    metric: Literal["mean_score", "negative_share"] = Field(
        "mean_score", description="mean_score: mean of P(positive) - P(negative) (-1..1); negative_share: share "
        "of negative items.")
    k: float = Field(3.0, gt=0, description="Standard deviations from the baseline mean that fire the rule.")
    direction: Literal["down", "up", "both"] = Field("both", description="down: the metric fell; up: it rose.")
    baseline: int = Field(30, ge=2, description="How many windows before the current one make the baseline.")
    min_baseline: int = Field(5, ge=2, description="Non-empty baseline windows needed before the rule can fire.")
    min_items: int = Field(3, ge=1, description="Items in the current window before the rule can fire.")
    min_std: float = Field(0.05, gt=0, description="Floor of the baseline's standard deviation (a company whose "
                           "metric never moved does not alert on noise).")

    @model_validator(mode="after")
    def _baseline(self) -> ZScoreRule:
        if self.min_baseline > self.baseline:
            raise ValueError(f"min_baseline ({self.min_baseline}) cannot exceed baseline ({self.baseline})")
        return self


Rule = Annotated[NegativeShareRule | ZScoreRule, Field(discriminator="kind")]


class Retry(_Section):
    base_seconds: float = Field(2.0, gt=0, description="Wait before the first retry; doubled after each failure.")
    max_seconds: float = Field(600.0, gt=0, description="Longest wait between two attempts.")
    max_attempts: int | None = Field(None, ge=1, description="Give up (status failed, kept for inspection) after "
                                     "this many attempts; null: retry until it is delivered.")


class _Sink(_Section):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Sink name (default: its type); "
                             "unique in the config.")
    retry: Retry = Field(default_factory=Retry, description="Backoff when delivery fails.")

    @model_validator(mode="after")
    def _default_name(self):
        self.name = self.name or self.type  # type: ignore[attr-defined] - every sink has one
        return self


class WebhookSink(_Sink):
    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://", description="Receiver URL; each alert is POSTed as JSON once.")
    secret_env: str | None = Field(None, description="Environment variable holding the HMAC-SHA256 secret "
                                   "(preferred to `secret`: it stays out of the file).")
    secret: str | None = Field(None, min_length=16, description="The HMAC-SHA256 secret itself (16+ characters).")
    timeout_seconds: float = Field(10.0, gt=0, description="Per attempt.")

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookSink:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret_env and secret: webhook bodies are always signed")
        return self

    def secret_value(self) -> bytes:
        if self.secret is not None:
            return self.secret.encode()
        value = os.environ.get(self.secret_env or "")
        if not value:
            raise ConfigError(f"webhook sink {self.name!r}: environment variable {self.secret_env} (the signing "
                              "secret) is not set")
        return value.encode()


class EmailSink(_Sink):
    type: Literal["email"] = "email"
    host: str = Field(description="SMTP server.")
    port: int = Field(587, gt=0, lt=65536, description="SMTP port.")
    sender: str = Field(description="From address.")
    to: list[str] = Field(min_length=1, description="Recipients.")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before sending.")
    username: str | None = Field(None, description="SMTP login, if the server needs one.")
    password_env: str | None = Field(None, description="Environment variable holding the SMTP password.")
    timeout_seconds: float = Field(15.0, gt=0, description="Per attempt.")


class LogSink(_Sink):
    type: Literal["log"] = "log"
    level: Literal["INFO", "WARNING", "ERROR"] = Field("WARNING", description="Log level of alert lines.")


Sink = Annotated[WebhookSink | EmailSink | LogSink, Field(discriminator="type")]


class InputFields(_Section):
    """Column (CSV) or field (JSONL) names of an item; the first one present is used."""

    id: list[str] = Field(["id"], description="A stable item id (default: a hash of time, text and tickers).")
    time: list[str] = Field(["time", "date", "published_at", "timestamp"], description="ISO 8601 time; without "
                            "a time zone it is taken as UTC.")
    text: list[str] = Field(["text", "title", "headline"], description="The headline or post.")
    tickers: list[str] = Field(["tickers", "ticker", "stock", "symbols"], description="Tickers: a list, or one "
                               "string (several separated by `,` `;` `|` or spaces).")


class Backfill(_Section):
    engine: Literal["local", "ray"] = Field("local", description="local: this process; ray: Ray Data map_batches "
                                            "over `workers` model replicas (pip install 'ray[data]').")
    address: str | None = Field(None, description="Ray cluster address (ray://host:10001 or auto); null starts a "
                                "local Ray instance.")
    workers: int = Field(2, ge=1, description="Model replicas (Ray actors, one CPU each).")
    batch_size: int = Field(256, ge=1, description="Texts per Ray batch.")
    chunk_items: int = Field(20_000, ge=1, description="Items read and predicted per round; each round is stored "
                             "and checkpointed before the next (a restart repeats at most one round).")


class Delivery(_Section):
    poll_seconds: float = Field(2.0, gt=0, description="How often `goldmine serve` (or `deliver --watch`) looks "
                                "for alerts due for (re)delivery.")
    lease_seconds: float = Field(60.0, gt=0, description="How long one process holds an alert it is sending; "
                                 "another may take it over after (a crash mid-send).")


class MonitorConfig(AppConfig):
    """Financial sentiment monitor: dated items -> sentiment and companies -> windowed aggregates -> alerts."""

    app_name = "monitor"

    models: MonitorModels = Field(description="Registry models the monitor runs.")
    label_map: dict[str, Literal["negative", "neutral", "positive"]] = Field(
        default_factory=dict, description="Sentiment model label -> polarity, for labels other than negative, "
        "neutral, positive, bearish, bullish (e.g. {'0': negative, '1': positive, '2': neutral}).")
    companies: dict[str, Company] = Field(default_factory=dict, description="The alias table inline: company "
                                          "name -> tickers and aliases.")
    aliases_file: str | None = Field(None, description="The alias table in a file (relative to this config): "
                                     "CSV with columns company,alias[,ticker] or YAML like `companies`.")
    unknown_tickers: Literal["keep", "drop"] = Field("keep", description="A ticker not in the alias table: keep it "
                                                     "as a company of its own name, or drop it.")
    ner_types: list[str] = Field(["ORG"], description="NER entity types that name companies.")
    ner_unknown: Literal["keep", "drop"] = Field("keep", description="An NER company not in the alias table: keep "
                                                 "it under its own name, or drop it.")
    windows: list[Duration] = Field(["1d"], min_length=1, description="Windows aggregated for reports and the API, "
                                    "besides those the rules use.")
    rules: list[Rule] = Field(default_factory=list, description="Alert rules.")
    sinks: list[Sink] = Field(default_factory=lambda: [LogSink()], description="Where alerts go (each alert to "
                              "each sink, exactly once when delivered).")
    fields: InputFields = Field(default_factory=InputFields, description="Where an item's parts are in the input.")
    store_text: bool = Field(True, description="Keep each item's text in the database (for reports and the API).")
    batch_size: int = Field(64, ge=1, description="Items per analysed and committed batch (CLI streams).")
    flush_seconds: float = Field(2.0, gt=0, description="stdin: a batch that has waited this long for more items "
                                 "is analysed as it is (a quiet live stream still alerts promptly).")
    max_chars: int = Field(2000, ge=1, description="Longer items are reported as malformed and skipped.")
    backfill: Backfill = Field(default_factory=Backfill, description="How `backfill` runs.")
    delivery: Delivery = Field(default_factory=Delivery, description="The alert outbox.")

    @field_validator("app")
    @classmethod
    def _is_monitor(cls, value: str) -> str:
        if value != "monitor":
            raise ValueError(f"this is the monitor's config, not {value!r}'s")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> MonitorConfig:
        for what, names in (("rules", [r.name for r in self.rules]),
                            ("sinks", [s.name for s in self.sinks])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what}: names must be unique; repeated: {repeated} (name the sinks of one type)")
        return self

    def all_windows(self) -> list[str]:
        """Every window aggregated: the configured ones, then those only rules use."""
        return list(dict.fromkeys([*self.windows, *(r.window for r in self.rules)]))

    def polarity_of(self, labels: list[str]) -> dict[str, str]:
        """Each model label's polarity; ConfigError naming the labels label_map has to add."""
        table = {**DEFAULT_LABEL_MAP, **self.label_map}
        found = {label: table.get(label, table.get(label.lower())) for label in labels}
        missing = [label for label, polarity in found.items() if polarity is None]
        if missing:
            raise ConfigError(f"{self.where('models.sentiment')}: the sentiment model's labels {missing} have no "
                              "polarity: map them in label_map (e.g. label_map: {'0': negative})")
        return found  # type: ignore[return-value]
