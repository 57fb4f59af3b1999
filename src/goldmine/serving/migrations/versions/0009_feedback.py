"""The feedback loop: answered items (what a feedback refers to), feedback, frozen evaluation sets, gate reports,
the tenant's choice to keep texts, and the kind of a job (train, or retrain from feedback).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        # a constant default: SQLite adds the column in place (an expression default would rebuild the table)
        batch.add_column(sa.Column("keep_texts", sa.Boolean(), nullable=False, server_default="0"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="train"))
    op.create_table(
        "answered_items",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "position", name="pk_answered_items"),
    )
    op.create_index("ix_answered_items_created", "answered_items", ["created_at"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("predicted", sa.String(200), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("request_id", "position", name="uq_feedback_request_id_position"),
    )
    op.create_index("ix_feedback_model_version", "feedback", ["model", "version"])
    op.create_index("ix_feedback_created", "feedback", ["created_at"])
    op.create_table(
        "eval_sets",
        sa.Column("model_name", sa.String(128), sa.ForeignKey("models.name", name="fk_eval_sets_model_name_models"),
                  nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", name="pk_eval_sets"),
    )
    op.create_table(
        "gate_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("candidate", sa.String(64), nullable=False),
        sa.Column("live", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gate_reports"),
    )
    op.create_index("ix_gate_reports_model", "gate_reports", ["model_name", "id"])


def downgrade() -> None:
    op.drop_index("ix_gate_reports_model", "gate_reports")
    op.drop_table("gate_reports")
    op.drop_table("eval_sets")
    op.drop_index("ix_feedback_created", "feedback")
    op.drop_index("ix_feedback_model_version", "feedback")
    op.drop_table("feedback")
    op.drop_index("ix_answered_items_created", "answered_items")
    op.drop_table("answered_items")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("keep_texts")
