"""the stream spans' merge-key index leads with the merge key

A stream's spans are read along (meter, customer, stream key, start). The merge-key index
was (meter, customer, merge key, start): for a query that names the stream and not its merge
key, it offers the same two leading columns, and without statistics (a new database, or
one autovacuum has not analyzed yet) PostgreSQL could pick it and filter every span of the
customer, a read that grew with the period's history. Led by the merge key, it serves only
the queries that name one.

Revision ID: 20261204_0015
Revises: 20261203_0014
Create Date: 2026-12-04 17:40:00
"""

from alembic import op

revision = "20261204_0015"
down_revision = "20261203_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_stream_spans_merge", table_name="stream_spans")
    op.create_index(
        "ix_stream_spans_merge_key",
        "stream_spans",
        ["merge_key", "meter", "customer", "start_us"],
    )


def downgrade() -> None:
    op.drop_index("ix_stream_spans_merge_key", table_name="stream_spans")
    op.create_index(
        "ix_stream_spans_merge", "stream_spans", ["meter", "customer", "merge_key", "start_us"]
    )
