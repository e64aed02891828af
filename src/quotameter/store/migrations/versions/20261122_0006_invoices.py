"""invoices

Revision ID: 20261122_0006
Revises: 20261122_0005
Create Date: 2026-11-22 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import quotameter.store.tables

revision = "20261122_0006"
down_revision = "20261122_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("period_end_us", sa.BigInteger(), nullable=False),
        sa.Column("plan", sa.String(length=128), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", quotameter.store.tables.Decimal(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("finalized_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint(
            "customer", "period_start_us", name=op.f("uq_invoices_customer_period_start_us")
        ),
    )
    op.create_index(
        "ix_invoices_customer_end", "invoices", ["customer", "period_end_us"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_customer_end", table_name="invoices")
    op.drop_table("invoices")
