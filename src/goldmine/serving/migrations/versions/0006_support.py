"""The support assistant's tables (goldmine.apps.support.store): conversations, their turns (messages masked) and
agents' corrections of turns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "support_conversations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_conversations")),
    )
    op.create_index(op.f("ix_support_conversations_tenant_id"), "support_conversations", ["tenant_id"])
    op.create_table(
        "support_turns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("intent", sa.String(128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("out_of_scope", sa.Boolean(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answer_id", sa.String(128), nullable=True),
        sa.Column("entities", sa.Text(), nullable=False),
        sa.Column("handoff_reason", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["support_conversations.id"],
                                name=op.f("fk_support_turns_conversation_id_support_conversations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_turns")),
    )
    op.create_index("ix_support_turns_conversation", "support_turns", ["conversation_id", "id"])
    op.create_table(
        "support_corrections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("correct_intent", sa.String(128), nullable=True),
        sa.Column("correct_answer", sa.Text(), nullable=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["support_turns.id"],
                                name=op.f("fk_support_corrections_turn_id_support_turns")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_corrections")),
    )
    op.create_index(op.f("ix_support_corrections_turn_id"), "support_corrections", ["turn_id"])


def downgrade() -> None:
    op.drop_table("support_corrections")
    op.drop_table("support_turns")
    op.drop_table("support_conversations")
