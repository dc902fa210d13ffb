"""partial indexes for the sweeps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_orders_pending_due", "next_check_at", "state = 'PENDING'"),
    ("ix_orders_resend_due", "next_check_at", "state IN ('QUEUED', 'UNKNOWN')"),
    ("ix_orders_queued_dispatched", "dispatched_at", "state = 'QUEUED'"),
)


def upgrade() -> None:
    for name, column, where in INDEXES:
        op.create_index(name, "orders", [column], unique=False,
                        postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def downgrade() -> None:
    for name, _column, _where in INDEXES:
        op.drop_index(name, table_name="orders")
