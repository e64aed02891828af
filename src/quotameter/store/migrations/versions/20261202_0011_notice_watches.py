"""notice watches

Per customer and limited feature, a bound on usage left by the last exact evaluation of its
notices: batches that cannot reach the next level skip the evaluation. No row means
"evaluate exactly", so the table starts empty. A wake-up a batch's bound brought forward is
not an exact crossing: `wakeups.exact` tells them apart (every existing one is exact).

Revision ID: 20261202_0011
Revises: 20261202_0010
Create Date: 2026-12-02 13:40:00
"""

import sqlalchemy as sa
from alembic import op

from quotameter.store.tables import Decimal

revision = "20261202_0011"
down_revision = "20261202_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watches",
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("feature", sa.String(length=128), nullable=False),
        sa.Column("meter", sa.String(length=128), nullable=False),
        sa.Column("period_end_us", sa.BigInteger(), nullable=False),
        sa.Column("evaluated_us", sa.BigInteger(), nullable=False),
        sa.Column("bound", Decimal(), nullable=False),
        sa.Column("rate", sa.Integer(), nullable=False),
        sa.Column("goal", Decimal(), nullable=True),
        sa.Column("unit_us", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer", "feature", name=op.f("pk_watches")),
    )
    with op.batch_alter_table("wakeups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("exact", sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("wakeups", schema=None) as batch_op:
        batch_op.drop_column("exact")
    op.drop_table("watches")
