"""Migrations that change stored data, run on data written by the version before them."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, insert, select

from quotameter.meters.model import stream_key
from quotameter.store.migrate import config
from quotameter.store.tables import stream_spans

# A table of the versions before 20261203_0014 (which takes its instants, then drops it).
stream_points = sa.table(
    "stream_points",
    *(
        sa.column(name, type_)
        for name, type_ in (
            ("meter", sa.String),
            ("customer", sa.String),
            ("stream_key", sa.String),
            ("merge_key", sa.String),
            ("t_us", sa.BigInteger),
            ("rank", sa.Integer),
            ("order_key", sa.String),
            ("action", sa.String),
        )
    ),
)


def _migrate(engine: Engine, revision: str, down: bool = False) -> None:
    cfg = config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
        conn.commit()


def test_stream_keys_joined_ambiguously_are_re_encoded_and_the_others_kept(engine: Engine) -> None:
    _migrate(engine, "20261122_0007", down=True)
    # As 20261122_0007 stored them: merge key, U+0001, stream, whatever the merge key held.
    rows = [
        ("x\x01y", "x\x01y\x01z"),
        ("x", "x\x01y\x01z"),
        ("u1", "u1\x01u1/mic"),
        ("a\x02", "a\x02\x01s"),
        ("solo", "solo"),
    ]
    with engine.begin() as conn:
        for i, (merge_key, key) in enumerate(rows):
            point = {"meter": "m", "customer": "c", "stream_key": key, "merge_key": merge_key}
            conn.execute(
                insert(stream_points).values(
                    **point, t_us=1, rank=0, order_key=f"e{i}", action="start"
                )
            )
            conn.execute(
                insert(stream_spans).values(
                    **point, start_us=1, end_us=None, last_us=1, explicit=False
                )
            )
    _migrate(engine, "20261203_0013")
    expected = [
        ("x\x01y", stream_key("x\x01y", "z")),
        ("x", stream_key("x", "y\x01z")),
        ("u1", "u1\x01u1/mic"),
        ("a\x02", stream_key("a\x02", "s")),
        ("solo", "solo"),
    ]
    assert expected[0][1] != expected[1][1]  # the two that shared a key no longer do
    with engine.connect() as conn:
        for table in (stream_points, stream_spans):
            stored = conn.execute(select(table.c.merge_key, table.c.stream_key)).all()
            assert sorted(map(tuple, stored)) == sorted(expected)
    _migrate(engine, "20261122_0007", down=True)
    with engine.connect() as conn:
        assert sorted(
            map(tuple, conn.execute(select(stream_points.c.merge_key, stream_points.c.stream_key)))
        ) == sorted(rows)
    _migrate(engine, "head")


def test_stored_catalogs_selling_top_ups_as_package_now_say_topup(engine: Engine) -> None:
    import orjson

    from quotameter.catalog.service import CatalogCache
    from quotameter.store.tables import catalogs

    _migrate(engine, "20261203_0012", down=True)
    old = {
        "meters": {"m": {"event_type": "x", "aggregation": "count"}},
        "plans": {
            "p": {
                "entitlements": {
                    "f": {
                        "meter": "m",
                        "allowance": {"fixed": 10},
                        "topup": {"block_size": 5, "price": "1.00"},
                    }
                },
                "prices": [{"type": "flat", "amount": "3.00"}, {"type": "package", "feature": "f"}],
            }
        },
        "customers": {},
    }
    with engine.begin() as conn:
        conn.execute(
            insert(catalogs).values(version=1, document=orjson.dumps(old).decode(), applied_us=1)
        )
    _migrate(engine, "head")
    with engine.connect() as conn:
        loaded = CatalogCache().current(conn)
    assert [p.type for p in loaded.spec.plans["p"].prices] == ["flat", "topup"]
    _migrate(engine, "20261203_0012", down=True)
    with engine.connect() as conn:
        document = conn.execute(select(catalogs.c.document)).scalar_one()
    assert orjson.loads(document)["plans"]["p"]["prices"][1] == {"type": "package", "feature": "f"}
    _migrate(engine, "head")


def test_dropping_stream_points_keeps_each_streams_latest_instant(engine: Engine) -> None:
    _migrate(engine, "20261203_0013", down=True)
    point = {"meter": "m", "customer": "c", "merge_key": "u"}
    points = [  # (stream, t, action): "closed" has a heartbeat after its stop, "lone" no span
        ("closed", 1, "start"),
        ("closed", 5, "stop"),
        ("closed", 9, "heartbeat"),
        ("open", 2, "start"),
        ("open", 7, "heartbeat"),
        ("lone", 3, "stop"),
        ("lone", 4, "heartbeat"),
    ]
    spans = [  # (stream, start, end, last, explicit)
        ("closed", 1, 5, 5, False),
        ("open", 2, None, 7, False),
        ("sent", 1, 3, 3, True),
    ]
    with engine.begin() as conn:
        for i, (key, t, action) in enumerate(points):
            conn.execute(
                insert(stream_points).values(
                    **point, stream_key=key, t_us=t, rank=0, order_key=f"e{i}", action=action
                )
            )
        for key, start, end, last, explicit in spans:
            conn.execute(
                insert(stream_spans).values(
                    **point,
                    stream_key=key,
                    start_us=start,
                    end_us=end,
                    last_us=last,
                    explicit=explicit,
                )
            )
    _migrate(engine, "head")
    s = stream_spans.c
    with engine.connect() as conn:
        stored = conn.execute(select(s.stream_key, s.start_us, s.end_us, s.last_us)).all()
    assert sorted(map(tuple, stored)) == [
        ("closed", 1, 5, 9),
        ("lone", 4, 4, 4),
        ("open", 2, None, 7),
        ("sent", 1, 3, 3),
    ]
    _migrate(engine, "20261203_0013", down=True)
    with engine.connect() as conn:
        assert conn.execute(select(stream_points.c.t_us)).all() == []
        keys = conn.execute(select(s.stream_key)).scalars().all()
    assert sorted(keys) == ["closed", "open", "sent"]  # the mark is gone with what it stood for
    _migrate(engine, "head")
