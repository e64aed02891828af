"""unbounded invoice totals

An invoice total is a usage times a price: each fits NUMERIC(38, 12), their product may not.

Revision ID: 20261202_0010
Revises: 20261122_0007
Create Date: 2026-12-02 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_0010"
down_revision = "20261202_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite keeps decimals as text already: nothing to widen there.
    if op.get_context().dialect.name == "postgresql":
        op.alter_column(
            "invoices",
            "total",
            type_=sa.Numeric(),
            existing_type=sa.Numeric(38, 12),
            existing_nullable=False,
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.alter_column(
            "invoices",
            "total",
            type_=sa.Numeric(38, 12),
            existing_type=sa.Numeric(),
            existing_nullable=False,
        )
