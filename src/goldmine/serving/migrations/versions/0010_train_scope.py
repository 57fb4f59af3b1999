"""The `train` scope: uploading datasets and starting, watching or cancelling fine-tuning jobs (billed compute) is
its own permission, so a key built into a customer's app to call predict cannot spend training time. Keys that
existed before it had that power with `predict`: they keep it (`train` is added to every key that has `predict`);
new keys get only the scopes they are created with.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("scopes", sa.String))


def _rewrite(change) -> None:
    connection = op.get_bind()
    for key_id, scopes in connection.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        new = ",".join(sorted(change({s for s in scopes.split(",") if s})))
        if new != scopes:
            connection.execute(keys.update().where(keys.c.id == key_id).values(scopes=new))


def upgrade() -> None:
    _rewrite(lambda scopes: scopes | {"train"} if "predict" in scopes else scopes)


def downgrade() -> None:  # before 0010, `predict` covered what `train` does
    _rewrite(lambda scopes: (scopes - {"train"}) | {"predict"} if "train" in scopes else scopes)
