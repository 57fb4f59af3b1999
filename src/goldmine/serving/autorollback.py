"""Automatic rollback: the live alias goes back when feedback shows its new version answers worse than the old one.

After each feedback, the version the alias points to is compared with the version its latest promotion replaced,
on the feedback given on each one's answers: when both have at least `feedback.rollback_min_feedback` and the new
one's accuracy is more than `feedback.rollback_margin` below the old one's, the promotion is undone
(as `goldmine models rollback` undoes it) and an alert fires: an ERROR log line and the Prometheus counter
`goldmine_feedback_rollbacks_total{model}`.

Only the latest promotion is ever undone automatically, and only once: when the alias's latest change is already a
rollback, nothing happens, so a run of bad feedback cannot walk the alias back through its whole history (a
person decides what comes next). The undo is a conditional update on the promotion row, so two feedbacks
arriving together roll back once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update

from goldmine.serving.db import AliasChange, Database, ModelAlias, utcnow
from goldmine.serving.feedback import version_accuracy
from goldmine.serving.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class Rollback:
    """An automatic rollback that happened: from `version` (accuracy `accuracy` over `count` feedback) back to
    `previous` (`previous_accuracy` over `previous_count`)."""

    model: str
    alias: str
    version: str
    previous: str
    accuracy: float
    count: int
    previous_accuracy: float
    previous_count: int

    def message(self) -> str:
        return (f"automatic rollback of {self.model} {self.alias}: version {self.version} answered "
                f"{self.accuracy:.1%} right over {self.count} feedback, version {self.previous} "
                f"{self.previous_accuracy:.1%} over {self.previous_count}; {self.alias} points at {self.previous} "
                "again")


def check(db: Database, settings: ServingSettings, model: str, alias: str = "production") -> Rollback | None:
    """Roll `alias` of `model` back if its feedback says so (see the module docstring); the rollback, or None."""
    cfg = settings.feedback
    with db.session() as session:
        latest = session.scalar(select(AliasChange).where(AliasChange.model_name == model, AliasChange.alias == alias)
                                .order_by(AliasChange.id.desc()).limit(1))
        if latest is None or latest.rolled_back_at is not None or latest.previous_version is None:
            return None
        stats = version_accuracy(session, model, [latest.version, latest.previous_version])
        (count, accuracy), (previous_count, previous_accuracy) = stats[latest.version], stats[latest.previous_version]
        if min(count, previous_count) < cfg.rollback_min_feedback or \
                accuracy >= previous_accuracy - cfg.rollback_margin:
            return None
        undone = session.execute(update(AliasChange).where(AliasChange.id == latest.id,
                                                           AliasChange.rolled_back_at.is_(None))
                                 .values(rolled_back_at=utcnow())).rowcount
        if undone != 1:
            return None  # another feedback rolled it back just now
        session.execute(update(ModelAlias).where(ModelAlias.model_name == model, ModelAlias.alias == alias,
                                                 ModelAlias.version == latest.version)
                        .values(version=latest.previous_version, updated_at=utcnow()))
    result = Rollback(model, alias, latest.version, latest.previous_version, accuracy, count, previous_accuracy,
                      previous_count)
    log.error("%s", result.message())
    return result
