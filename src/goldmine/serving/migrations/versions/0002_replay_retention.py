"""Stored idempotent replies expire: a partial index finds the expired ones without scanning usage_records.

Only records with an Idempotency-Key hold a reply, so the index covers just those (a partial index, which
SQLite and PostgreSQL both have); `Meter.purge_expired` looks them up by `created_at`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WHERE = sa.text("idempotency_key IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_usage_records_replay_created", "usage_records", ["created_at"], sqlite_where=WHERE,
                    postgresql_where=WHERE)


def downgrade() -> None:
    op.drop_index("ix_usage_records_replay_created", table_name="usage_records")
