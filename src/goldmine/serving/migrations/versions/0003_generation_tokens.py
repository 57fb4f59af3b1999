"""Generation: usage records count the tokens generated, and keys may limit tokens per minute.

`usage_records.output_tokens` is what a completion call is billed for beside its prompt (`input_tokens`); older
records, and every call that generates nothing, hold 0. `api_keys.tokens_per_minute` is the token rate limit of
the generation routes (prompt plus completion tokens); NULL means none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as table:
        table.add_column(sa.Column("output_tokens", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("tokens_per_minute", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("tokens_per_minute")
    with op.batch_alter_table("usage_records") as table:
        table.drop_column("output_tokens")
