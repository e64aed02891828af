"""Every table quotameter keeps.

Instants are stored as integer microseconds since the Unix epoch (UTC): exact, compact,
and compared the same way by SQLite and PostgreSQL. Quantities that may be fractional are
stored as exact decimals (see `Decimal` below).
"""

from __future__ import annotations

from decimal import Decimal as PyDecimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from quotameter.decimals import canonical


def _ordered(length: int) -> String:
    """A string that sorts by code point on both databases (PostgreSQL's default collation
    would sort by language rules, and event order must not depend on the server's locale)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Decimal(TypeDecorator[PyDecimal]):
    """An exact decimal on both databases.

    PostgreSQL has NUMERIC: NUMERIC(38, 12) for quantities and prices, which are bounded
    where they enter (below 10^15), and unbounded NUMERIC for `bounded=False` (an invoice
    total: a product of a usage and a price). SQLite would silently turn NUMERIC into a
    float, so there it is kept as text and arithmetic goes through the `dec_add`/`dec_max`
    functions registered on each SQLite connection (see `store.engine`).
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, bounded: bool = True) -> None:
        super().__init__()
        self.bounded = bounded

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        if not self.bounded:
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(Numeric(precision=38, scale=12, asdecimal=True))

    def process_bind_param(
        self, value: PyDecimal | int | str | None, dialect: Dialect
    ) -> PyDecimal | str | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return format(PyDecimal(value), "f")
        return PyDecimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> PyDecimal | None:
        if value is None:
            return None
        return canonical(PyDecimal(value))


catalogs = Table(
    "catalogs",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("document", Text, nullable=False),
    Column("applied_us", BigInteger, nullable=False),
)

# The audit trail and the source of every recomputation.
events = Table(
    "events",
    metadata,
    Column(
        "pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("source", String(512), nullable=False),
    Column("event_id", String(512), nullable=False),
    Column("type", String(256), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    UniqueConstraint("source", "event_id"),
    Index("ix_events_subject_type_time", "subject", "type", "time_us"),
)

# count / sum / max / latest, per meter, customer and UTC hour.
buckets = Table(
    "meter_buckets",
    metadata,
    Column("meter", String(128), nullable=False),
    Column("customer", String(256), nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("total", Decimal, nullable=True),
    Column("vmax", Decimal, nullable=True),
    Column("latest_key", _ordered(1100), nullable=True),
    Column("latest_value", Decimal, nullable=True),
    Column("min_us", BigInteger, nullable=False),
    Column("max_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("meter", "customer", "bucket"),
)

unique_values = Table(
    "meter_unique_values",
    metadata,
    Column("meter", String(128), nullable=False),
    Column("customer", String(256), nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("value", String(1024), nullable=False),
    Column("min_us", BigInteger, nullable=False),
    Column("max_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("meter", "customer", "bucket", "value"),
)

# One row per gauge event with the level right after it, in event order.
gauge_points = Table(
    "gauge_points",
    metadata,
    Column("meter", String(128), nullable=False),
    Column("customer", String(256), nullable=False),
    Column("t_us", BigInteger, nullable=False),
    Column("order_key", _ordered(1100), nullable=False),
    Column("set_value", Decimal, nullable=True),
    Column("delta", Decimal, nullable=True),
    Column("level", Decimal, nullable=False),
    PrimaryKeyConstraint("meter", "customer", "t_us", "order_key"),
)

# Spans replayed from the start/stop/heartbeat events of each stream, and spans sent whole
# (explicit). end_us NULL = still open; last_us = its last event, and on a stream's latest
# derived row the stream's latest event; a derived row with end_us = start_us is a mark of
# no length that only keeps that instant (see meters.repository.LatestRow).
stream_spans = Table(
    "stream_spans",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("meter", String(128), nullable=False),
    Column("customer", String(256), nullable=False),
    Column(
        "stream_key", String(1024), nullable=False
    ),  # merge key (escaped), U+0001, stream: see meters.model.stream_key
    Column("merge_key", String(512), nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=True),
    Column("last_us", BigInteger, nullable=False),
    Column("explicit", Boolean, nullable=False),
    Index("ix_stream_spans_stream", "meter", "customer", "stream_key", "start_us"),
    # Led by the merge key: a read of one stream (which names no merge key) cannot take it
    # for the stream index, whatever the statistics.
    Index("ix_stream_spans_merge_key", "merge_key", "meter", "customer", "start_us"),
    # Open spans only: inserting a closed span or closing one costs no entry here.
    Index(
        "ix_stream_spans_open",
        "meter",
        "customer",
        sqlite_where=text("end_us IS NULL"),
        postgresql_where=text("end_us IS NULL"),
    ),
)

# Unions of the closed spans of one merge key (a user): what gets rounded.
merged_spans = Table(
    "merged_spans",
    metadata,
    Column("meter", String(128), nullable=False),
    Column("customer", String(256), nullable=False),
    Column("merge_key", String(512), nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("meter", "customer", "merge_key", "start_us"),
    Index("ix_merged_spans_end", "meter", "customer", "end_us"),
    sqlite_with_rowid=False,  # the key is the table: one B-tree less to write per span
)

DERIVED_TABLES = (buckets, unique_values, gauge_points, stream_spans, merged_spans)

# --- customers over time, grants, notices (entitlements) ---------------------------------

# Seat counts as they changed: the one in force at t is the latest with effective_us <= t.
seat_changes = Table(
    "seat_changes",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("customer", String(256), nullable=False),
    Column("effective_us", BigInteger, nullable=False),
    Column("seats", Integer, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
    Index("ix_seat_changes_customer", "customer", "effective_us"),
)

# Subscriptions as they changed (by hand, by auto-upgrade, or by a new catalog).
plan_changes = Table(
    "plan_changes",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("customer", String(256), nullable=False),
    Column("effective_us", BigInteger, nullable=False),
    Column("plan", String(128), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
    Index("ix_plan_changes_customer", "customer", "effective_us"),
)

# Admins, owner, members and auto_upgrade as changed through the API (over the catalog's).
customer_settings = Table(
    "customer_settings",
    metadata,
    Column("customer", String(256), primary_key=True),
    Column("settings", Text, nullable=False),
)

# Extra allowance: top-up blocks bought, and operators' credits.
grants = Table(
    "grants",
    metadata,
    Column("customer", String(256), nullable=False),
    Column("grant_id", String(256), nullable=False),
    Column("feature", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", Decimal, nullable=False),
    Column("blocks", Integer, nullable=True),
    Column("price", Decimal, nullable=True),
    Column("rollover", Boolean, nullable=False),
    Column("effective_us", BigInteger, nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("customer", "grant_id"),
    Index("ix_grants_feature", "customer", "feature", "expires_us"),
)

# Which notice levels already fired in a period: the unique key makes each fire once,
# also with several processes; deleting a row re-arms it.
fired = Table(
    "fired_thresholds",
    metadata,
    Column("customer", String(256), nullable=False),
    Column("feature", String(128), nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("key", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("customer", "feature", "period_start_us", "key"),
)

# The outbox: every notice recorded, delivered at least once by the delivery workers.
notices = Table(
    "notices",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("customer", String(256), nullable=False),
    Column("feature", String(128), nullable=True),
    Column("type", String(32), nullable=False),
    Column("percent", Decimal, nullable=True),
    Column("period_start_us", BigInteger, nullable=True),
    Column("period_end_us", BigInteger, nullable=True),
    Column("at_us", BigInteger, nullable=False),
    Column("recipients", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
    Index("ix_notices_customer", "customer", "id"),
    Index("ix_notices_due", "status", "next_attempt_us"),
)

# When time alone will next cross a notice level or a limit (open streams).
wakeups = Table(
    "wakeups",
    metadata,
    Column("customer", String(256), nullable=False),
    Column("feature", String(128), nullable=False),
    Column("due_us", BigInteger, nullable=False),
    # False: brought forward by a batch's bound (notifications.watch), not a crossing found
    # exactly; the scheduler finds the exact one first.
    Column("exact", Boolean, nullable=False, server_default=true()),
    PrimaryKeyConstraint("customer", "feature"),
    Index("ix_wakeups_due", "due_us"),
)

# Per customer and feature, what the last exact evaluation leaves to bound usage cheaply
# until the next (see notifications.watch); an unlimited feature's has no goal. Rows are
# written for every feature of the customer's plan together: a customer with rows and none
# for a meter has no feature on it. No row: every batch of the customer is evaluated exactly.
watches = Table(
    "watches",
    metadata,
    Column("customer", String(256), nullable=False),
    Column("feature", String(128), nullable=False),
    Column("meter", String(128), nullable=False),
    Column("period_end_us", BigInteger, nullable=False),
    Column("evaluated_us", BigInteger, nullable=False),
    Column("bound", Decimal, nullable=False),
    Column("rate", Integer, nullable=False),
    Column("goal", Decimal, nullable=True),
    Column("unit_us", BigInteger, nullable=True),
    Column("version", BigInteger, nullable=False),
    PrimaryKeyConstraint("customer", "feature"),
)

# Customers whose usage changed since their notices were last evaluated. Written in the
# same transaction as the events, so a crash cannot lose an evaluation; many batches for a
# customer coalesce into one evaluation.
pending_evaluations = Table(
    "pending_evaluations",
    metadata,
    Column("customer", String(256), primary_key=True),
    Column("since_us", BigInteger, nullable=False),
)

# Bumped in the same transaction as every write that can move a customer's balances; the
# horizon is the latest instant any of that data is stamped with (events, effective_at).
# A process may reuse a balance it computed while the version is unchanged (see
# entitlements.cache).
customer_state = Table(
    "customer_state",
    metadata,
    Column("customer", String(256), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("horizon_us", BigInteger, nullable=False),
)

# API keys: only a SHA-256 digest of each key is kept (keys are 256-bit random, so a fast
# hash is enough); a revoked key stays, with the instant it was revoked.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("customer", String(256)),
    Column("label", String(256)),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
)

# --- invoices ------------------------------------------------------------------------------

# Finalized invoices: one per customer and billing period, a frozen snapshot of its lines.
# The unique key makes finalization happen once, also with several processes
# (INSERT … ON CONFLICT DO NOTHING).
invoices = Table(
    "invoices",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("customer", String(256), nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("period_end_us", BigInteger, nullable=False),
    Column("plan", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total", Decimal(bounded=False), nullable=False),
    Column("lines", Text, nullable=False),
    Column("finalized_us", BigInteger, nullable=False),
    UniqueConstraint("customer", "period_start_us"),
    Index("ix_invoices_customer_end", "customer", "period_end_us"),
)

# --- deliveries ----------------------------------------------------------------------------

# One row per notice and channel target: an e-mail message to the notice's recipients, or
# one webhook endpoint. Content is rendered when the notice is fanned out, so every retry
# sends the same bytes. A claimed row is `sending` until `lease_until_us`; a process that
# dies mid-delivery leaves it to be claimed again after that (next_attempt_us = lease end).
deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("notice_id", BigInteger, nullable=False),
    Column("customer", String(256), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("lease_until_us", BigInteger),
    Column("last_error", Text),
    Column("created_us", BigInteger, nullable=False),
    Column("delivered_us", BigInteger),
    Index("ix_deliveries_due", "status", "next_attempt_us"),
    Index("ix_deliveries_notice_id", "notice_id"),
)

# --- customers signed up through the API, standings, console sessions ----------------------

# Customers created by `POST /v1/customers` rather than declared in a catalog document: they
# are carried into every catalog applied later that does not declare them itself.
signups = Table(
    "signups",
    metadata,
    Column("customer", String(256), primary_key=True),
    Column("created_us", BigInteger, nullable=False),
)

# Per customer and limited feature, where its last exact evaluation of notices found it:
# what the operators' list of customers filters and sorts on, in one query.
standings = Table(
    "standings",
    metadata,
    Column("customer", String(256), nullable=False),
    Column("feature", String(128), nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("period_end_us", BigInteger, nullable=False),
    Column("usage", Decimal, nullable=False),
    Column("limit", Decimal, nullable=True),
    Column("percent", Decimal, nullable=True),
    Column("near", Boolean, nullable=False),  # the first notify level is passed
    Column("blocked", Boolean, nullable=False),
    Column("overage", Boolean, nullable=False),
    Column("since_us", BigInteger, nullable=True),  # blocked or in overage since
    Column("evaluated_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("customer", "feature"),
    Index("ix_standings_percent", "percent"),
)

# The console's signing secret when none is configured: made once, shared by every process.
console_secrets = Table(
    "console_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)
