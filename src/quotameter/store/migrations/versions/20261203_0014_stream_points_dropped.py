"""stream points dropped; fewer index entries per span

The start/stop/heartbeat events of duration meters were stored twice: in the event log,
and projected onto their stream in stream_points. The stream's latest derived row in
stream_spans now keeps the instant of its latest event (a closed span keeps it in last_us,
a stream none of whose events made a span has a mark: a closed row of no length), and a
late event replays its stream from the event log. The instants are taken from
stream_points here before it goes.

The open-span index only holds open spans (inserting a closed span, or closing one, costs
no entry there), and on SQLite merged_spans is a clustered table: its key is the table.

Downgrade recreates stream_points empty: rebuild the duration meters after it.

Revision ID: 20261203_0014
Revises: 20261203_0013
Create Date: 2026-12-03 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261203_0014"
down_revision = "20261203_0013"
branch_labels = None
depends_on = None

_SAME = "{a}.meter = {b}.meter AND {a}.customer = {b}.customer AND {a}.stream_key = {b}.stream_key"
_LATEST_POINT = (
    "(SELECT max(p.t_us) FROM stream_points p WHERE "
    f"{_SAME.format(a='p', b='stream_spans')} AND p.action != 'span')"
)


def _keep_latest_instants() -> None:
    """Each stream's latest closed derived row takes its latest event's instant; a stream
    with events and no derived row gets a mark."""
    op.execute(
        f"UPDATE stream_spans SET last_us = {_LATEST_POINT} "
        "WHERE NOT explicit AND end_us IS NOT NULL AND start_us = (SELECT max(x.start_us) FROM "
        f"stream_spans x WHERE {_SAME.format(a='x', b='stream_spans')} AND NOT x.explicit) "
        f"AND last_us < {_LATEST_POINT}"
    )
    op.execute(
        "INSERT INTO stream_spans (meter, customer, stream_key, merge_key, start_us, end_us, "
        "last_us, explicit) SELECT p.meter, p.customer, p.stream_key, min(p.merge_key), "
        "max(p.t_us), max(p.t_us), max(p.t_us), false FROM stream_points p "
        "WHERE p.action != 'span' AND NOT EXISTS (SELECT 1 FROM stream_spans s WHERE "
        f"{_SAME.format(a='s', b='p')} AND NOT s.explicit) "
        "GROUP BY p.meter, p.customer, p.stream_key"
    )


def _merged_spans(*, clustered: bool) -> None:
    """Rebuild merged_spans on SQLite with or without its rowid (PostgreSQL has none)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_merged_spans_end", table_name="merged_spans")
    op.rename_table("merged_spans", "merged_spans_old")
    op.create_table(
        "merged_spans",
        sa.Column("meter", sa.String(length=128), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("merge_key", sa.String(length=512), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "meter", "customer", "merge_key", "start_us", name=op.f("pk_merged_spans")
        ),
        sqlite_with_rowid=not clustered,
    )
    op.execute(
        "INSERT INTO merged_spans (meter, customer, merge_key, start_us, end_us) "
        "SELECT meter, customer, merge_key, start_us, end_us FROM merged_spans_old"
    )
    op.drop_table("merged_spans_old")
    op.create_index("ix_merged_spans_end", "merged_spans", ["meter", "customer", "end_us"])


def upgrade() -> None:
    _keep_latest_instants()
    op.drop_table("stream_points")
    op.drop_index("ix_stream_spans_open", table_name="stream_spans")
    op.create_index(
        "ix_stream_spans_open",
        "stream_spans",
        ["meter", "customer"],
        sqlite_where=sa.text("end_us IS NULL"),
        postgresql_where=sa.text("end_us IS NULL"),
    )
    _merged_spans(clustered=True)


def downgrade() -> None:
    _merged_spans(clustered=False)
    op.drop_index("ix_stream_spans_open", table_name="stream_spans")
    op.create_index("ix_stream_spans_open", "stream_spans", ["meter", "customer", "end_us"])
    op.execute("DELETE FROM stream_spans WHERE end_us = start_us")
    op.create_table(
        "stream_points",
        sa.Column("meter", sa.String(length=128), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("stream_key", sa.String(length=1024), nullable=False),
        sa.Column("merge_key", sa.String(length=512), nullable=False),
        sa.Column("t_us", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column(
            "order_key",
            sa.String(length=1100).with_variant(
                sa.String(length=1100, collation="C"), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "meter",
            "customer",
            "stream_key",
            "t_us",
            "rank",
            "order_key",
            name=op.f("pk_stream_points"),
        ),
    )
