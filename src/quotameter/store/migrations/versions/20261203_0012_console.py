"""signups, standings, console secrets

Customers created through the API (kept across catalog applies), where each customer's last
evaluation found each limited feature (the operators' list), and the console's signing
secret when none is configured.

Revision ID: 20261203_0012
Revises: 20261202_0011
Create Date: 2026-12-03 08:10:00
"""

import sqlalchemy as sa
from alembic import op

from quotameter.store.tables import Decimal

revision = "20261203_0012"
down_revision = "20261202_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signups",
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer", name=op.f("pk_signups")),
    )
    op.create_table(
        "standings",
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("feature", sa.String(length=128), nullable=False),
        sa.Column("period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("period_end_us", sa.BigInteger(), nullable=False),
        sa.Column("usage", Decimal(), nullable=False),
        sa.Column("limit", Decimal(), nullable=True),
        sa.Column("percent", Decimal(), nullable=True),
        sa.Column("near", sa.Boolean(), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("overage", sa.Boolean(), nullable=False),
        sa.Column("since_us", sa.BigInteger(), nullable=True),
        sa.Column("evaluated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer", "feature", name=op.f("pk_standings")),
    )
    op.create_index("ix_standings_percent", "standings", ["percent"])
    op.create_table(
        "console_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_console_secrets")),
    )


def downgrade() -> None:
    op.drop_table("console_secrets")
    op.drop_index("ix_standings_percent", table_name="standings")
    op.drop_table("standings")
    op.drop_table("signups")
