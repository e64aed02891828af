"""stream keys: an injective join of merge key and stream, with room for its escapes

A duration meter with a merge property stores each stream under merge key, U+0001, stream.
That join let user "x\x01y" with stream "z" and user "x" with stream "y\x01z" share a key;
now U+0001 and U+0002 in the merge key are escaped with U+0002 (meters.model.stream_key).
Keys whose merge key has neither character, which is every key people write, are unchanged;
the others are re-encoded here. Each row also stores its merge key, so the stream part is
what follows it. A key may now reach 769 characters (two 256-byte parts, one escaped):
PostgreSQL's columns are widened (SQLite does not enforce a length).

Revision ID: 20261202_0008
Revises: 20261122_0007
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "20261202_0008"
down_revision = "20261122_0007"
branch_labels = None
depends_on = None

TABLES = ("stream_points", "stream_spans")


def _escaped(merge_key: str) -> str:
    return merge_key.replace("\x02", "\x02\x02").replace("\x01", "\x02\x01")


def _rekey(encode_old: Callable[[str], str], encode_new: Callable[[str], str]) -> None:
    bind = op.get_bind()
    for name in TABLES:
        table = sa.table(
            name, sa.column("stream_key", sa.String), sa.column("merge_key", sa.String)
        )
        c = table.c
        affected = bind.execute(
            sa.select(c.stream_key, c.merge_key)
            .distinct()
            .where(
                c.stream_key
                != c.merge_key,  # a meter without merge property keys streams by their own value
                sa.or_(
                    c.merge_key.contains("\x01", autoescape=True),
                    c.merge_key.contains("\x02", autoescape=True),
                ),
            )
        ).all()
        for old_key, merge_key in affected:
            prefix = encode_old(merge_key) + "\x01"
            if old_key.startswith(prefix):
                new_key = encode_new(merge_key) + "\x01" + old_key[len(prefix) :]
                bind.execute(
                    sa.update(table)
                    .where(c.stream_key == old_key, c.merge_key == merge_key)
                    .values(stream_key=new_key)
                )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TABLES:
            op.alter_column(
                name,
                "stream_key",
                type_=sa.String(length=1024),
                existing_type=sa.String(length=512),
                existing_nullable=False,
            )
    _rekey(lambda merge_key: merge_key, _escaped)


def downgrade() -> None:
    _rekey(_escaped, lambda merge_key: merge_key)
