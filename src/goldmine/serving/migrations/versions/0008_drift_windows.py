"""Monitoring: `drift_windows`, one row per closed window of a model version (counts, shares and test results;
never a text).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_windows",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=False),
        sa.Column("texts", sa.Integer(), nullable=False),
        sa.Column("alarm", sa.Boolean(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_windows"),
    )
    op.create_index("ix_drift_windows_model_version", "drift_windows", ["model_name", "version", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_windows_model_version", table_name="drift_windows")
    op.drop_table("drift_windows")
