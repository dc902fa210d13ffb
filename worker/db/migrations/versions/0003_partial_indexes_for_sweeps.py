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
    ("ix_orders_pending_due", ["next_check_at", "id"], "state = 'PENDING'"),
    ("ix_orders_resend_due", ["next_check_at"], "state IN ('QUEUED', 'UNKNOWN')"),
    ("ix_orders_queued_dispatched", ["dispatched_at"], "state = 'QUEUED'"),
)
# PostgreSQL only: the stale-PENDING sweep reads these from the index (index-only scan).
INCLUDE = {"ix_orders_pending_due": ["mode", "claimed_until", "dispatched_at"]}


def upgrade() -> None:
    for name, columns, where in INDEXES:
        op.create_index(name, "orders", columns, unique=False,
                        postgresql_where=sa.text(where), sqlite_where=sa.text(where),
                        postgresql_include=INCLUDE.get(name, []))


def downgrade() -> None:
    for name, _column, _where in INDEXES:
        op.drop_index(name, table_name="orders")
