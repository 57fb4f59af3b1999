"""Alert rules over a company's window counts: the share of negative items, and a jump from the baseline.

A rule is evaluated for a (company, window) each time an item lands in it, on the counts as they stand after
that item: an alert fires the first time its condition holds, once per (rule, company, window start). Because
the evaluation is per item and in stream order, the alerts do not depend on how the stream was cut into batches,
so a run that was killed and resumed raises exactly the alerts an uninterrupted run raises.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from goldmine.apps.monitor.config import NegativeShareRule, ZScoreRule


@dataclass
class Counts:
    """One company's items in one window."""

    items: int = 0
    negative: int = 0
    neutral: int = 0
    positive: int = 0
    score_sum: float = 0.0

    def add(self, polarity: str, score: float) -> None:
        self.items += 1
        setattr(self, polarity, getattr(self, polarity) + 1)
        self.score_sum += score

    def metric(self, name: str) -> float:
        if name == "negative_share":
            return self.negative / self.items if self.items else 0.0
        return self.score_sum / self.items if self.items else 0.0


@dataclass
class Fired:
    """A rule that holds: what it measured and why it fires."""

    value: float
    message: str
    details: dict = field(default_factory=dict)


def alert_id(tenant: str, rule: str, company: str, window: str, start: datetime) -> str:
    key = f"{tenant}|{rule}|{company}|{window}|{start.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _when(start: datetime, window: str) -> str:
    return f"the {window} window from {start:%Y-%m-%d %H:%M} UTC"


def negative_share(rule: NegativeShareRule, company: str, start: datetime, now: Counts) -> Fired | None:
    if now.items < rule.min_items:
        return None
    share = now.negative / now.items
    if share < rule.threshold:
        return None
    return Fired(share, f"{company}: {now.negative} of {now.items} items negative ({share:.0%}) in "
                 f"{_when(start, rule.window)}; rule {rule.name} fires at {rule.threshold:.0%} with at least "
                 f"{rule.min_items} items",
                 {"items": now.items, "negative": now.negative, "share": share, "threshold": rule.threshold,
                  "min_items": rule.min_items})


def zscore(rule: ZScoreRule, company: str, start: datetime, now: Counts, baseline: list[Counts]) -> Fired | None:
    if now.items < rule.min_items:
        return None
    history = [b.metric(rule.metric) for b in baseline if b.items]
    if len(history) < rule.min_baseline:
        return None
    mean = statistics.fmean(history)
    std = max(statistics.pstdev(history), rule.min_std)
    value = now.metric(rule.metric)
    z = (value - mean) / std
    fell, rose = z <= -rule.k, z >= rule.k
    if not ((rule.direction in ("down", "both") and fell) or (rule.direction in ("up", "both") and rose)):
        return None
    side = "below" if z < 0 else "above"
    return Fired(value, f"{company}: {rule.metric.replace('_', ' ')} {value:+.2f} over {now.items} items in "
                 f"{_when(start, rule.window)} is {abs(z):.1f} standard deviations {side} its baseline (mean "
                 f"{mean:+.2f}, sd {std:.2f} over {len(history)} windows); rule {rule.name} fires at {rule.k:g}",
                 {"items": now.items, "metric": rule.metric, "z": z, "baseline_mean": mean, "baseline_std": std,
                  "baseline_windows": len(history), "k": rule.k})


def evaluate(rule, company: str, start: datetime, now: Counts, previous: list[Counts]) -> Fired | None:
    """`previous`: the company's counts in the `rule.baseline` windows before `start` (empty ones included)."""
    if isinstance(rule, NegativeShareRule):
        return negative_share(rule, company, start, now)
    return zscore(rule, company, start, now, previous)


def bucket_start(moment: datetime, seconds: int) -> datetime:
    """The start of the window of `seconds` that holds `moment` (windows aligned to the Unix epoch, UTC)."""
    epoch = datetime(1970, 1, 1)
    elapsed = int((moment - epoch).total_seconds())
    return epoch + timedelta(seconds=elapsed - elapsed % seconds)
