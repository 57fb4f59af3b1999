"""Feedback: a client says which label an answered item should have had, by the call's `request_id`.

What a feedback refers to is written when the call is answered: one `AnsweredItem` per text of a classification
call (single-label; NER, multi-label, pair and per-call-label zero-shot calls are not recorded), in the same
transaction as the call's usage record (`Usage.also`), so an item exists exactly when its call was billed. It
holds the label and score answered, the version that answered, and a sha256 of the text keyed by the request id
and position (equal texts of two calls do not share a hash, so the table cannot be joined on texts). The text
itself is kept only for tenants that chose to keep texts (`tenants.keep_texts`, off by default; `goldmine feedback
keep-texts`), masked by `goldmine.serving.masking` like logged inputs. Without it, a feedback may carry the text:
when it matches the hash it is kept (masked) with the feedback, since the client has just sent it for this
purpose; a text that does not match is a 422. Items older than `feedback.retention_days` are deleted (texts
with them), as idempotent replies are; feedback already given stays.

Only texts kept with a feedback are trained on (`goldmine.serving.retrain`); every feedback, with or without a
text, counts toward the live accuracy that drives the automatic rollback (`goldmine.serving.autorollback`).
A second feedback on the same item replaces the first.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.orm import Session

from goldmine.inference.model import RunMeta
from goldmine.serving.db import AnsweredItem, Database, Feedback, ModelVersion, Tenant, utcnow
from goldmine.serving.errors import InvalidRequest, NotFound
from goldmine.serving.masking import mask
from goldmine.serving.registry import ensure_tenant, get_model
from goldmine.serving.settings import ServingSettings

log = logging.getLogger(__name__)

PURGE_CHUNK = 500  # calls per purge transaction: short write locks on SQLite
RIGHT = case((Feedback.correct, 1), else_=0)  # portable: a boolean summed as 0/1


class FeedbackIn(BaseModel):
    """The body of `POST /v1/models/{name}/feedback`."""

    # the schema says what the validator checks: a label, or correct: true, not both
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["label"], "properties": {"label": {"type": "string"}, "correct": {"const": False}}},
        {"required": ["correct"], "properties": {"correct": {"const": True}, "label": {"type": "null"}}}]})

    request_id: str = Field(min_length=1, max_length=64, description="The request_id of the answered call.")
    position: int = Field(0, ge=0, description="Which text of the call (0 for the first).")
    label: str | None = Field(None, min_length=1, max_length=200, description="The label the text should have had "
                              "(one of the model's labels).")
    correct: bool = Field(False, description="True: the answer was right (instead of a label).")
    text: str | None = Field(None, max_length=100_000, description="The text of the item, when this tenant does "
                             "not keep texts: kept (masked) for retraining if it is the text that was answered.")

    @model_validator(mode="after")
    def _one_answer(self) -> FeedbackIn:
        if (self.label is None) == (not self.correct):
            raise ValueError("give either label (the right label) or correct: true, not both")
        return self


@dataclass
class FeedbackInfo:
    id: int
    model: str
    version: str
    request_id: str
    position: int
    predicted: str
    label: str
    correct: bool
    text_kept: bool
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def text_digest(request_id: str, position: int, text: str) -> str:
    """sha256 of an item's text, keyed by its request and position."""
    return hashlib.sha256(f"{request_id}\0{position}\0{text}".encode()).hexdigest()


def answered_items(settings: ServingSettings, tenant: str, model: str, version: str, request_id: str,
                   texts: list[str], predictions: list[dict], pairs: bool = False,
                   own_labels: bool = False) -> Callable[[Session], None] | None:
    """The write the predict route adds to its usage record's transaction (`Usage.also`): one row per answered
    item, with the masked text only if the tenant keeps texts. None when nothing is recorded (recording off, or a
    call whose answers are not single labels of the model's own: NER, multi-label, pairs, zero-shot labels)."""
    if not settings.feedback.record or pairs or own_labels or not predictions or "label" not in predictions[0]:
        return None
    now = utcnow()
    rows = [{"request_id": request_id, "position": i, "tenant_id": tenant, "model": model, "version": version,
             "label": str(p["label"])[:200], "score": float(p.get("score", 0.0)),
             "text_sha256": text_digest(request_id, i, text), "created_at": now, "text": text}
            for i, (text, p) in enumerate(zip(texts, predictions, strict=True))]

    def write(session: Session) -> None:
        known = session.info.setdefault("goldmine_keep_texts", {})  # one look-up per tenant per group commit
        if tenant not in known:
            known[tenant] = bool(session.scalar(select(Tenant.keep_texts).where(Tenant.id == tenant)))
        keep = known[tenant]
        session.execute(insert(AnsweredItem), [{**row, "text": mask(row["text"]) if keep else None}
                                               for row in rows])

    return write


def set_keep_texts(db: Database, tenant: str, keep: bool) -> None:
    """Whether `tenant`'s answered texts are kept (masked) for feedback and retraining. Turning it off keeps what
    was stored until the retention deletes it."""
    with db.session() as session:
        ensure_tenant(session, tenant).keep_texts = keep


def model_labels(path: str | Path) -> list[str]:
    """The labels a feedback may give for a version: its classes, and its out-of-scope fallback label if any."""
    meta = RunMeta.load(Path(path))
    fallback = (meta.out_of_scope or {}).get("fallback_label")
    return [*meta.label_names, *([fallback] if fallback and fallback not in meta.label_names else [])]


def check_label(label: str, allowed: list[str]) -> str:
    if label not in allowed:
        close = difflib.get_close_matches(label, allowed, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise InvalidRequest(f'label: "{label}" is not one of the model\'s labels [{", ".join(allowed)}]{hint}')
    return label


def submit(db: Database, tenant: str | None, model: str, body: FeedbackIn, source: str = "api") -> FeedbackInfo:
    """Store a feedback on an answered item of `model` (`tenant` None: an operator, any tenant).

    Raises NotFound for an unknown or foreign model, or a request id that is unknown, another tenant's, another
    model's or past retention (all alike, so nothing leaks); InvalidRequest for a label the version does not have
    or a text that is not the one answered.
    """
    with db.session() as session:
        owner = get_model(session, model, tenant).tenant_id
        item = session.get(AnsweredItem, (body.request_id, body.position))
        if item is None or item.tenant_id != owner or item.model != model:
            raise NotFound(f"no answered item {body.position} of request {body.request_id!r} for model {model!r}")
        path = session.scalar(select(ModelVersion.path).where(ModelVersion.model_name == model,
                                                               ModelVersion.version == item.version))
        if path is None:
            raise NotFound(f"version {item.version} of {model!r} is no longer registered")
        label = item.label if body.correct else check_label(body.label or "", model_labels(path))
        text = item.text
        if text is None and body.text is not None:
            if text_digest(body.request_id, body.position, body.text) != item.text_sha256:
                raise InvalidRequest(f"text: not the text of item {body.position} of request {body.request_id!r}")
            text = mask(body.text)
        row = session.scalar(select(Feedback).where(Feedback.request_id == body.request_id,
                                                    Feedback.position == body.position))
        values = dict(tenant_id=owner, model=model, version=item.version, request_id=body.request_id,
                      position=body.position, predicted=item.label, label=label, correct=label == item.label,
                      source=source, created_at=utcnow())
        if row is None:
            row = Feedback(**values, text=text)
            session.add(row)
        else:  # a second feedback on the item replaces the first (a text given once stays)
            for key, value in values.items():
                setattr(row, key, value)
            row.text = text or row.text
        session.flush()
        return _info(row)


def _info(row: Feedback) -> FeedbackInfo:
    return FeedbackInfo(row.id, row.model, row.version, row.request_id, row.position, row.predicted, row.label,
                        row.correct, row.text is not None, row.created_at.isoformat(timespec="seconds") + "Z")


def version_accuracy(session: Session, model: str, versions: list[str]) -> dict[str, tuple[int, float]]:
    """(feedback count, accuracy) of each version's answers, from the feedback on them."""
    rows = session.execute(select(Feedback.version, func.count(), func.sum(RIGHT))
                           .where(Feedback.model == model, Feedback.version.in_(versions))
                           .group_by(Feedback.version)).all()
    out = {version: (0, 0.0) for version in versions}
    for version, count, right in rows:
        out[version] = (int(count), float(right or 0) / int(count))
    return out


def summary(db: Database, tenant: str | None, model: str) -> list[dict[str, Any]]:
    """Per version that answered: feedback count, corrections, texts kept, accuracy from feedback."""
    with db.session() as session:
        get_model(session, model, tenant)
        rows = session.execute(
            select(Feedback.version, func.count(), func.sum(RIGHT),
                   func.count(Feedback.text), func.min(Feedback.created_at), func.max(Feedback.created_at))
            .where(Feedback.model == model).group_by(Feedback.version).order_by(func.min(Feedback.created_at))).all()
    return [{"version": v, "feedback": int(n), "corrections": int(n) - int(right or 0), "texts_kept": int(texts),
             "accuracy": round(float(right or 0) / int(n), 6), "first": _iso(first), "last": _iso(last)}
            for v, n, right, texts, first, last in rows]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


def purge_answered(db: Database, settings: ServingSettings, now: datetime | None = None) -> int:
    """Delete answered items (texts with them) older than `feedback.retention_days`; returns how many."""
    cutoff = (now or utcnow()) - timedelta(days=settings.feedback.retention_days)
    purged = 0
    while True:  # short transactions of whole calls (a call's items share their created_at)
        with db.session() as session:
            calls = session.scalars(select(AnsweredItem.request_id).where(AnsweredItem.created_at < cutoff)
                                    .distinct().limit(PURGE_CHUNK)).all()
            if calls:
                purged += session.execute(delete(AnsweredItem).where(AnsweredItem.request_id.in_(calls))
                                          .execution_options(synchronize_session=False)).rowcount
        if len(calls) < PURGE_CHUNK:
            return purged


async def purge_periodically(db: Database, settings: ServingSettings, every_seconds: float = 3600.0) -> None:
    """`purge_answered` now and every `every_seconds` until cancelled (the app's lifespan); failures are logged."""
    while True:
        try:
            purged = await asyncio.to_thread(purge_answered, db, settings)
            if purged:
                log.info("deleted %d answered items past feedback retention", purged)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("purging answered items failed")
        await asyncio.sleep(every_seconds)
