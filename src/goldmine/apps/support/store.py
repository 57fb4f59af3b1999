"""The assistant's tables in the serving database (migration 0006), every row keyed by tenant.

- `support_conversations`: one row per conversation (its id is what the client sends back to continue it);
- `support_turns`: each message with what the assistant did: intent, score, answer or hand-off, entity types and
  offsets. The message is stored masked (`entities.mask_message`) and entity texts not at all, so no e-mail, phone
  or order number reaches the database in clear;
- `support_corrections`: an agent's "this was wrong" for a turn, with the right intent or answer: labeled data
  for the feedback loop (a corrected intent is a training example of that intent).

A turn is committed with its conversation in one transaction before the answer leaves, like a usage record.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from goldmine.serving.db import Base, Database, utcnow
from goldmine.serving.errors import NotFound


class SupportConversation(Base):
    __tablename__ = "support_conversations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SupportTurn(Base):
    __tablename__ = "support_turns"
    __table_args__ = (Index("ix_support_turns_conversation", "conversation_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("support_conversations.id"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)  # masked
    intent: Mapped[str] = mapped_column(String(128))
    score: Mapped[float] = mapped_column(Float)
    out_of_scope: Mapped[bool] = mapped_column(Boolean)
    answer: Mapped[str | None] = mapped_column(Text, default=None)  # masked too (answers may quote the customer)
    answer_id: Mapped[str | None] = mapped_column(String(128), default=None)  # the response-base entry
    entities: Mapped[str] = mapped_column(Text, default="[]")  # JSON [{type, start, end}]: no entity text
    handoff_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SupportCorrection(Base):
    __tablename__ = "support_corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("support_turns.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    correct_intent: Mapped[str | None] = mapped_column(String(128), default=None)
    correct_answer: Mapped[str | None] = mapped_column(Text, default=None)  # masked
    agent: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def check_conversation(db: Database, tenant: str, conversation_id: str | None) -> None:
    """404 for a conversation id this tenant does not have (another tenant's is unknown too)."""
    if conversation_id is None:
        return
    with db.session() as session:
        row = session.get(SupportConversation, conversation_id)
        if row is None or row.tenant_id != tenant:
            raise NotFound(f"no conversation {conversation_id!r}: leave conversation_id out to start one")


def record_turn(db: Database, tenant: str, conversation_id: str | None, masked_message: str, reply: dict,
                masked_answer: str | None) -> tuple[str, int]:
    """Store one turn (creating the conversation when `conversation_id` is None): (conversation id, turn id)."""
    with db.session() as session:
        if conversation_id is None:
            conversation = SupportConversation(id=uuid.uuid4().hex, tenant_id=tenant)
            session.add(conversation)
        else:
            conversation = session.get(SupportConversation, conversation_id)
            if conversation is None or conversation.tenant_id != tenant:
                raise NotFound(f"no conversation {conversation_id!r}: leave conversation_id out to start one")
            conversation.updated_at = utcnow()
        turn = SupportTurn(conversation_id=conversation.id, tenant_id=tenant, message=masked_message,
                           intent=reply["intent"], score=reply["score"], out_of_scope=reply["out_of_scope"],
                           answer=masked_answer, answer_id=reply.get("answer_id"),
                           entities=json.dumps([{k: e[k] for k in ("type", "start", "end")}
                                                for e in reply["entities"]]),
                           handoff_reason=(reply["handoff"] or {}).get("reason"))
        session.add(turn)
        session.flush()
        return conversation.id, turn.id


def record_correction(db: Database, tenant: str, turn_id: int, correct_intent: str | None,
                      masked_answer: str | None, agent: str) -> int:
    """Store an agent's correction of a turn of this tenant (404 for an unknown turn): its id."""
    with db.session() as session:
        turn = session.get(SupportTurn, turn_id)
        if turn is None or turn.tenant_id != tenant:
            raise NotFound(f"no turn {turn_id}")
        row = SupportCorrection(turn_id=turn_id, tenant_id=tenant, correct_intent=correct_intent,
                                correct_answer=masked_answer, agent=agent)
        session.add(row)
        session.flush()
        return row.id


def conversation(db: Database, tenant: str, conversation_id: str) -> dict:
    """A conversation of this tenant with its turns (masked, as stored) and their corrections (404 if unknown)."""
    with db.session() as session:
        row = session.get(SupportConversation, conversation_id)
        if row is None or row.tenant_id != tenant:
            raise NotFound(f"no conversation {conversation_id!r}")
        turns = session.scalars(select(SupportTurn).where(SupportTurn.conversation_id == conversation_id)
                                .order_by(SupportTurn.id)).all()
        corrections = session.scalars(select(SupportCorrection).where(
            SupportCorrection.turn_id.in_([t.id for t in turns])).order_by(SupportCorrection.id)).all()
        return {
            "conversation_id": row.id, "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
            "turns": [{"turn_id": t.id, "message": t.message, "intent": t.intent, "score": t.score,
                       "out_of_scope": t.out_of_scope, "answer": t.answer, "answer_id": t.answer_id,
                       "entities": json.loads(t.entities), "handoff_reason": t.handoff_reason,
                       "created_at": t.created_at.isoformat(),
                       "corrections": [{"correction_id": c.id, "correct_intent": c.correct_intent,
                                        "correct_answer": c.correct_answer, "agent": c.agent,
                                        "created_at": c.created_at.isoformat()}
                                       for c in corrections if c.turn_id == t.id]}
                      for t in turns],
        }


def corrections(db: Database, tenant: str) -> list[dict]:
    """Every correction of this tenant with its turn's masked message: the labeled examples agents produced."""
    with db.session() as session:
        rows = session.execute(select(SupportCorrection, SupportTurn).join(
            SupportTurn, SupportTurn.id == SupportCorrection.turn_id).where(
            SupportCorrection.tenant_id == tenant).order_by(SupportCorrection.id)).all()
        return [{"turn_id": t.id, "text": t.message, "predicted_intent": t.intent, "intent": c.correct_intent,
                 "answer": c.correct_answer, "agent": c.agent} for c, t in rows]
