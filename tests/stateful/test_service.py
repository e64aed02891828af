"""The whole service, driven through its HTTP API by a Hypothesis state machine, on both databases.

Each example starts a fresh database and interleaves ingest (new events, exact repeats,
repeats of an id with other content, late and out-of-order stream events, one-event spans,
several customers, a few bad events), checks and consumption (repeats, amounts at and past
the hard limit), top-ups and credits, seat and plan changes (also effective in the past),
catalog re-applies (the same document, and one where two meters change definition and are
rebuilt), restarts of the app on the same database, reads in the past and usage reports, and
time moving on (minutes to days, across month edges in three time zones). Before each check
the scheduler makes its pass, as the one of a running server would.

After every step the service must agree with `model.Model`, which recomputes every balance
from what the test told the service, with the pure cores only:
- every balance of every customer's plan (usage, included, granted, limit, hard_limit,
  remaining, overage, has_access, level, period), the plan and seats in force and the plan
  history (auto-upgrades included);
- every acknowledged event is stored exactly once;
- no answer is a 5xx, and every 4xx error names its field;
- an allowed consume never takes the enforced quantity past the hard limit;
- each notice level (threshold, exhausted, blocked) is recorded at most once per customer,
  feature and period, unless usage fell back below it since (a re-arm); and every level
  the standing has reached was recorded.

A failure prints the steps that lead to it and a `@reproduce_failure(...)` line: put that on
`ServiceMachine` to replay it. QUOTAMETER_STATEFUL_EXAMPLES and QUOTAMETER_STATEFUL_STEPS
make a longer soak than CI's.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import create_engine, text

from quotameter.api.web import dumps
from quotameter.catalog.model import validate_catalog
from quotameter.entitlements.model import HUNDRED, allows, reached, thresholds
from quotameter.periods import calendar_month
from quotameter.store.tables import metadata
from quotameter.timeutil import from_us, rfc3339, to_us
from stateful.model import CONSUME_SOURCE, Consumed, FeatureMissing, Model, StoredEvent
from support import ADMIN, ADMIN_KEY

CATALOG: dict[str, Any] = {
    "meters": {
        "calls": {"event_type": "call", "aggregation": "count", "filter": {"kind": ["api", "web"]}},
        "megabytes": {
            "event_type": "upload",
            "aggregation": "sum",
            "value_property": "mb",
            "unit": "MB",
        },
        "media": {
            "event_type": "media",
            "aggregation": "duration",
            "stream_property": "stream",
            "merge_property": "user",
            "filter": {"kind": ["mic", "cam"]},
            "rounding": {"unit_seconds": 60, "mode": "ceil"},
            "unit": "minute",
        },
        "volume": {
            "event_type": "volume",
            "aggregation": "gauge",
            "value_property": "set",
            "delta_property": "d",
            "unit": "hour",
        },
    },
    "plans": {
        "team": {
            "entitlements": {
                "media": {
                    "meter": "media",
                    "allowance": {"per_seat": 30},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50, 90], "exhausted": True, "recipients": "admins"},
                    "topup": {"block_size": 60, "price": "2.00"},
                },
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 20},
                    "enforcement": "soft",
                    "slack": 0.1,
                    "notify": {"percent_remaining": [25], "exhausted": True, "recipients": "owner"},
                },
                "storage": {
                    "meter": "megabytes",
                    "allowance": {"fixed": 100},
                    "enforcement": "overage",
                    "overage_limit": 50,
                },
                "volume": {
                    "meter": "volume",
                    "allowance": {"fixed": 10},
                    "period": "billing_cycle",
                    "enforcement": "overage",
                    "overage_limit": 5,
                    "notify": {"percent_used": [80]},
                },
            }
        },
        "starter": {
            "next_plan": "growth",
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 8},
                    "enforcement": "hard",
                    "notify": {"percent_used": [40], "exhausted": True, "recipients": "owner"},
                },
                "storage": {
                    "meter": "megabytes",
                    "allowance": {"per_seat": 10},
                    "enforcement": "hard",
                    "notify": {"percent_used": [60]},
                },
            },
        },
        "growth": {
            "next_plan": "scale",
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 16},
                    "enforcement": "hard",
                    "notify": {"percent_used": [40], "exhausted": True, "recipients": "owner"},
                },
                "storage": {
                    "meter": "megabytes",
                    "allowance": {"per_seat": 20},
                    "enforcement": "soft",
                    "slack": 0.25,
                },
            },
        },
        "scale": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 40},
                    "enforcement": "overage",
                    "overage_limit": 10,
                },
                "storage": {"meter": "megabytes", "enforcement": "none"},
                "media": {"meter": "media", "enforcement": "none"},
            }
        },
    },
    "customers": {
        "acme": {
            "plan": "team",
            "seats": 2,
            "admins": ["ops@acme.example"],
            "members": ["a@acme.example"],
            "billing_anchor": "2026-01-15",
        },
        "kolk": {
            "plan": "team",
            "seats": 1,
            "owner": "boss@kolk.example",
            "timezone": "Asia/Kolkata",
            "billing_anchor": "2026-01-31",
        },
        "west": {
            "plan": "starter",
            "seats": 3,
            "owner": "cto@west.example",
            "timezone": "America/Los_Angeles",
            "auto_upgrade": True,
        },
    },
}

# The same catalog with two meter definitions changed (and a stream with no sign of life for
# 15 minutes closed at its last event): both meters are rebuilt from the raw events.
VARIANT = copy.deepcopy(CATALOG)
VARIANT["meters"]["calls"]["filter"] = {"kind": ["api"]}
VARIANT["meters"]["media"]["rounding"] = {"unit_seconds": 30, "mode": "floor"}
VARIANT["meters"]["media"]["idle_timeout"] = 900

CUSTOMERS = sorted(CATALOG["customers"])
AUTO_UPGRADING = {c for c, spec in CATALOG["customers"].items() if spec.get("auto_upgrade")}
PLANS = sorted(CATALOG["plans"])
FEATURES = ["calls", "media", "storage", "volume"]
USERS = ["u1", "u2"]
DEVICES = ["mic", "cam", "listen"]  # listening is filtered out of the media meter
START = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)

# "<field>: <reason>", where a field is a dotted path (data.mb, effective_at, catalog).
FIELD_ERROR = re.compile(r"^[A-Za-z_][\w.\[\]]*: \S")

EXAMPLES = int(os.environ.get("QUOTAMETER_STATEFUL_EXAMPLES", "10"))
STEPS = int(os.environ.get("QUOTAMETER_STATEFUL_STEPS", "30"))


@dataclass
class Environment:
    """What the pytest fixtures give every example: a database to start fresh, and the clock."""

    db_url: str
    template: Path
    workdir: Path
    clock: Any
    examples: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    def fresh_database(self) -> str:
        if self.db_url.startswith("sqlite"):
            path = self.workdir / f"example{next(self.examples)}.sqlite3"
            shutil.copy(self.template, path)
            return f"sqlite:///{path}"
        engine = create_engine(self.db_url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)} RESTART IDENTITY"
                )
            )
        engine.dispose()
        return self.db_url

    def drop(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            for path in Path(url.removeprefix("sqlite:///")).parent.glob(Path(url).name + "*"):
                path.unlink(missing_ok=True)


def body_of(response: Any) -> Any:
    """The JSON answer with numbers kept exact (Decimals, never floats)."""
    return json.loads(response.text, parse_float=Decimal)


class ServiceMachine(RuleBasedStateMachine):
    env: ClassVar[Environment]

    def __init__(self) -> None:
        super().__init__()
        self.clock = self.env.clock
        self.clock.now = START
        self.db_url = self.env.fresh_database()
        self.ids = itertools.count(1)
        self.sent: dict[tuple[str, str], dict[str, Any]] = {}  # acknowledged events, as posted
        self.pending: set[str] = set()  # customers the service evaluates before the next read
        self.fired: set[tuple[Any, ...]] = set()  # notice levels recorded and not re-armed since
        self.seen_notice = dict.fromkeys(CUSTOMERS, 0)
        self.model = Model(validate_catalog(CATALOG))
        self.app: Any = None
        self.client: Any = None
        self._start()
        r = self.call("PUT", "/v1/catalog", CATALOG)
        assert r.status_code == 200 and body_of(r)["rebuilt_meters"] == sorted(CATALOG["meters"]), (
            r.text
        )

    # --- the service ---------------------------------------------------------------------------

    def _start(self) -> None:
        from quotameter.server import create_app
        from quotameter.settings import Settings

        # The scheduler thread is off: each check drives `scheduler.tick` with the injected clock.
        self.app = create_app(
            Settings(database_url=self.db_url, scheduler=False, tune_gc=False, admin_key=ADMIN_KEY),
            clock=self.clock,
        )
        self.client = TestClient(self.app, headers=ADMIN)
        self.client.__enter__()

    def _stop(self) -> None:
        self.client.__exit__(None, None, None)
        self.app.state.services.engine.dispose()

    def teardown(self) -> None:
        self._stop()
        self.env.drop(self.db_url)

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        kwargs: dict[str, Any] = {"params": params}
        if body is not None:
            kwargs.update(content=dumps(body), headers={"content-type": "application/json"})
        r = self.client.request(method, path, **kwargs)
        assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text}"
        if 400 <= r.status_code < 500:
            error = r.json().get("error", "")
            assert FIELD_ERROR.match(error), (
                f"{method} {path} answered {r.status_code} without a field: {r.text}"
            )
        return r

    @property
    def now(self) -> datetime:
        return self.clock.now  # type: ignore[no-any-return]

    # --- drawing -------------------------------------------------------------------------------

    def _moment(self, data: st.DataObject, customer: str) -> datetime:
        """When an event happened: now, a moment ago, hours or days late, around the start of
        the customer's month, or (not for a customer that auto-upgrades, which time alone must
        not move) a few minutes ahead."""
        kind = data.draw(
            st.sampled_from(["now", "recent", "recent", "late", "late", "old", "edge", "ahead"]),
            label="when",
        )
        micros = timedelta(
            microseconds=data.draw(st.sampled_from([0, 0, 0, 1, 500_000]), label="micros")
        )
        if kind == "recent":
            return (
                self.now
                - timedelta(seconds=data.draw(st.integers(1, 3600), label="seconds ago"))
                + micros
            )
        if kind == "late":
            return (
                self.now
                - timedelta(minutes=data.draw(st.integers(60, 3 * 1440), label="minutes late"))
                + micros
            )
        if kind == "old":
            return (
                self.now - timedelta(days=data.draw(st.integers(3, 40), label="days late")) + micros
            )
        if kind == "edge":
            return min(
                self.now,
                self._month_start(customer)
                + timedelta(
                    seconds=data.draw(st.integers(-90, 90), label="seconds from the month's start")
                )
                + micros,
            )
        if kind == "ahead" and customer not in AUTO_UPGRADING:
            return self.now + timedelta(
                seconds=data.draw(st.integers(1, 900), label="seconds ahead")
            )
        return self.now

    def _month_start(self, customer: str) -> datetime:
        return calendar_month(self.now, self.model.spec(customer).timezone).start

    def _past(self, data: st.DataObject, customer: str) -> datetime | None:
        """An `effective_at`: none (now), a moment ago, just after another change of the
        customer, around the start of the customer's month or of the month before, or any time
        in the last 40 days."""
        kind = data.draw(
            st.sampled_from(
                ["now", "now", "recent", "after a change", "month start", "last month", "any"]
            ),
            label="effective",
        )
        if kind == "now":
            return None
        changes = sorted(
            {
                c.effective_us
                for c in [*self.model.plans.get(customer, []), *self.model.seats.get(customer, [])]
            }
            | {g.effective_us for g in self.model.grants.get(customer, {}).values()}
        )
        if kind == "after a change" and changes:
            after = from_us(data.draw(st.sampled_from(changes), label="change at"))
            return min(
                self.now,
                after + timedelta(minutes=data.draw(st.integers(0, 90), label="minutes after")),
            )
        if kind == "recent":
            return self.now - timedelta(minutes=data.draw(st.integers(1, 120), label="minutes ago"))
        if kind == "any":
            return self.now - timedelta(
                minutes=data.draw(st.integers(1, 40 * 1440), label="minutes before now")
            )
        start = self._month_start(customer)
        if kind == "last month":
            start = calendar_month(
                start - timedelta(microseconds=1), self.model.spec(customer).timezone
            ).start
        return min(
            self.now,
            start + timedelta(minutes=data.draw(st.integers(-2, 30 * 1440), label="minutes in")),
        )

    def _event(
        self,
        customer: str,
        type_: str,
        when: datetime | None,
        data: dict[str, Any],
        source: str = "app",
    ) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"ev{next(self.ids)}",
            "source": source,
            "type": type_,
            "subject": customer,
            "data": data,
        }
        if when is not None:
            ev["time"] = rfc3339(when)
        return ev

    def _good_events(self, data: st.DataObject) -> list[dict[str, Any]]:
        """One new well-formed event, or the events of one media session (shuffled later)."""
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        source = data.draw(st.sampled_from(["app", "sdk"]), label="source")
        kind = data.draw(
            st.sampled_from(
                ["call", "call", "upload", "volume", "media", "media", "span", "session", "chat"]
            ),
            label="event",
        )
        when: datetime | None = self._moment(data, customer)
        if data.draw(st.integers(0, 9), label="no time") == 0:
            when = None  # stamped when received
        if kind == "call":
            return [
                self._event(
                    customer,
                    "call",
                    when,
                    {"kind": data.draw(st.sampled_from(["api", "web", "cli"]))},
                    source,
                )
            ]
        if kind == "upload":
            mb = data.draw(st.sampled_from([1, 2, 5, "0.5", "7.25", "33.3", 15]), label="mb")
            return [self._event(customer, "upload", when, {"mb": mb}, source)]
        if kind == "volume":
            change = data.draw(
                st.sampled_from(
                    [
                        {"d": 1},
                        {"d": 3},
                        {"d": -2},
                        {"d": 6},
                        {"set": 0},
                        {"set": 9},
                        {"set": 14},
                        {"set": 4, "d": 1},
                    ]
                ),
                label="volume",
            )
            return [self._event(customer, "volume", when, change, source)]
        if kind == "chat":
            return [self._event(customer, "chat", when, {"text": "hello"}, source)]
        user = data.draw(st.sampled_from(USERS), label="user")
        device = data.draw(st.sampled_from(DEVICES), label="device")
        stream = {"user": user, "stream": f"{user}/{device}", "kind": device}
        if kind == "media":
            action = data.draw(st.sampled_from(["start", "stop", "heartbeat"]), label="action")
            return [self._event(customer, "media", when, {**stream, "action": action}, source)]
        begin = when or self.now
        length = timedelta(
            minutes=data.draw(st.integers(0, 150), label="minutes long"),
            seconds=data.draw(st.sampled_from([0, 1, 10, 30, 59]), label="and seconds"),
        )
        if kind == "span":
            span = {**stream, "start": rfc3339(begin), "end": rfc3339(begin + length)}
            return [self._event(customer, "media", begin + length, span, source)]
        out = [self._event(customer, "media", begin, {**stream, "action": "start"}, source)]
        for k in range(data.draw(st.integers(0, 2), label="heartbeats")):
            out.append(
                self._event(
                    customer,
                    "media",
                    begin + length * (k + 1) / 3,
                    {**stream, "action": "heartbeat"},
                    source,
                )
            )
        if data.draw(st.integers(0, 3), label="left open") > 0:
            out.append(
                self._event(customer, "media", begin + length, {**stream, "action": "stop"}, source)
            )
        return out

    def _bad_event(self, data: st.DataObject) -> tuple[dict[str, Any], str]:
        """An event the service must refuse by its index, and the field its error must name."""
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        kind = data.draw(
            st.sampled_from(["subject", "number", "action", "id", "time", "span"]), label="bad"
        )
        now = self.now
        mic = {"user": "u1", "stream": "u1/mic", "kind": "mic"}
        if kind == "subject":
            return self._event("nobody", "call", now, {"kind": "api"}), "subject"
        if kind == "number":
            return self._event(customer, "upload", now, {"mb": "lots"}), "data.mb"
        if kind == "action":
            return self._event(customer, "media", now, {**mic, "action": "pause"}), "data.action"
        if kind == "id":
            ev = self._event(customer, "call", now, {"kind": "api"})
            del ev["id"]
            return ev, "id"
        if kind == "time":
            ev = self._event(customer, "call", None, {"kind": "api"})
            ev["time"] = now.replace(tzinfo=None).isoformat()
            return ev, "time"
        span = {**mic, "start": rfc3339(now), "end": rfc3339(now - timedelta(minutes=5))}
        return self._event(customer, "media", now, span), "data.end"

    # --- rules ---------------------------------------------------------------------------------

    # Hypothesis picks among the rules evenly: events and consumption get more than one each.
    @rule(data=st.data())
    def ingest(self, data: st.DataObject) -> None:
        self._ingest(data)

    @rule(data=st.data())
    def ingest_more(self, data: st.DataObject) -> None:
        self._ingest(data)

    @rule(data=st.data())
    def ingest_again(self, data: st.DataObject) -> None:
        self._ingest(data)

    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        self._consume(data)

    @rule(data=st.data())
    def consume_more(self, data: st.DataObject) -> None:
        self._consume(data)

    def _ingest(self, data: st.DataObject) -> None:
        items: list[
            tuple[dict[str, Any], str | None]
        ] = []  # (event, field its error names, if bad)
        for _ in range(data.draw(st.integers(1, 6), label="parts")):
            part = data.draw(
                st.sampled_from(["new", "new", "new", "new", "repeat", "same id", "bad"]),
                label="part",
            )
            if part == "bad":
                items.append(self._bad_event(data))
            elif part == "repeat" and (
                pool := [*self.sent.values(), *(ev for ev, bad in items if bad is None)]
            ):
                items.append(
                    (copy.deepcopy(data.draw(st.sampled_from(pool), label="repeat of")), None)
                )
            elif part == "same id" and self.sent:
                first = data.draw(st.sampled_from(sorted(self.sent)), label="id of")
                other = self._good_events(data)[0]
                other.update(source=first[0], id=first[1], subject=self.sent[first]["subject"])
                items.append((other, None))
            else:
                items.extend((ev, None) for ev in self._good_events(data))
        items = data.draw(st.permutations(items), label="order")

        received_us = to_us(self.now)
        expected_rejected: list[tuple[int, str]] = []
        new: list[StoredEvent] = []
        keys: set[tuple[str, str]] = set()
        duplicates = 0
        for index, (ev, bad) in enumerate(items):
            if bad is not None:
                expected_rejected.append((index, bad))
                continue
            key = (ev["source"], ev["id"])
            if key in self.model.events or key in keys:
                duplicates += 1
                continue
            keys.add(key)
            t_us = to_us(datetime.fromisoformat(ev["time"])) if "time" in ev else received_us
            new.append(
                StoredEvent(ev["source"], ev["id"], ev["type"], ev["subject"], t_us, ev["data"])
            )

        r = self.call("POST", "/v1/events", [ev for ev, _ in items])
        assert r.status_code == 200, r.text
        got = r.json()
        assert [x["index"] for x in got["rejected"]] == [i for i, _ in expected_rejected], got
        for answer, (_, name) in zip(got["rejected"], expected_rejected, strict=True):
            assert answer["error"].startswith(f"{name}: "), answer
        assert (got["accepted"], got["duplicates"]) == (len(new), duplicates), got
        for ev, bad in items:
            if bad is None:
                self.sent.setdefault((ev["source"], ev["id"]), ev)
        for stored in new:
            self.model.add_event(stored)
            self.pending.add(stored.subject)

    def _consume(self, data: st.DataObject) -> None:
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        feature = data.draw(st.sampled_from(FEATURES), label="feature")
        request_id = data.draw(st.sampled_from(["r1", "r2", "r3", "r4"]), label="id")
        key = f"{customer}/{feature}/{request_id}"
        now_us = to_us(self.now)
        try:
            _, _, ent = self.model.entitlement(customer, feature, now_us)
        except FeatureMissing:
            ent = None
        meter = self.model.catalog.meters[ent.meter] if ent is not None else None
        counting = meter is not None and meter.aggregation == "count"
        if key in self.model.consume_ids:
            amount = self.model.consume_ids[key]  # a repeat asks for what it asked the first time
        else:
            amount = (
                self._amount(data, customer, feature, counting) if meter is not None else Decimal(1)
            )
        path = f"/v1/customers/{customer}/entitlements/{feature}"
        checked = self.call("POST", f"{path}/check", {"amount": amount})
        if ent is None:
            assert checked.status_code == 404, checked.text
        else:  # a check reads the balance at its instant; it records nothing
            expected = self.model.balance(customer, feature, self.now)
            assert (checked.status_code, checked.json()["allowed"]) == (
                200,
                allows(expected.standing, amount)[0],
            ), (expected, amount, checked.text)
            self._same_balance(expected, body_of(checked), f"check of {customer}/{feature}")
        r = self.call("POST", f"{path}/consume", {"id": request_id, "amount": amount})
        if ent is None or meter is None:
            assert r.status_code == 404 and r.json()["error"].startswith("feature: "), r.text
            return
        if meter.aggregation not in ("count", "sum"):
            assert r.status_code == 422 and r.json()["error"].startswith("feature: "), r.text
            return
        got = body_of(r)
        if key in self.model.consume_ids:
            assert (r.status_code, got["duplicate"]) == (200, True), r.text
            return
        before = self.model.balance(customer, feature, self.now, whole_period=True).standing
        allowed, _ = allows(before, amount)
        assert (r.status_code, got["allowed"], got["duplicate"]) == (
            (200, True, False) if allowed else (409, False, False)
        ), (before, amount, r.text)
        event(f"consume {'allowed' if allowed else 'refused'}")
        if not allowed:
            return
        recorded = {k: values[0] for k, values in meter.filter.items()}
        if meter.aggregation == "sum":
            recorded[meter.value_property] = str(amount)  # type: ignore[index]
        self.model.consumed.append(
            Consumed(
                customer, meter.event_type, key, now_us, recorded, int(amount) if counting else 1
            )
        )
        self.model.consume_ids[key] = amount
        self.pending.add(customer)
        after = self.model.balance(customer, feature, self.now, whole_period=True).standing
        assert Decimal(got["usage"]) == after.usage, (after, r.text)
        if after.hard_limit is not None:  # never past the hard limit through consume
            assert after.usage <= after.hard_limit and Decimal(got["usage"]) <= Decimal(
                got["hard_limit"]
            ), r.text

    def _amount(self, data: st.DataObject, customer: str, feature: str, counting: bool) -> Decimal:
        """A small amount, or one that just fits under the hard limit, or one that just does not."""
        kind = data.draw(st.sampled_from(["small", "small", "fits", "over"]), label="amount")
        s = self.model.balance(customer, feature, self.now, whole_period=True).standing
        gap = None if s.hard_limit is None else s.hard_limit - s.enforced_quantity
        if kind == "small" or gap is None or gap <= 0:
            if counting:
                return Decimal(data.draw(st.integers(1, 4), label="units"))
            return data.draw(
                st.sampled_from([Decimal("0.5"), Decimal(3), Decimal("12.75"), Decimal(40)]),
                label="mb",
            )
        if counting:
            fits = int(gap)  # whole units
            return Decimal(max(1, fits) + (1 if kind == "over" else 0))
        return gap + (Decimal("0.01") if kind == "over" else 0)

    def _grant(self, customer: str, req: dict[str, Any], effective: datetime | None) -> None:
        path = f"/v1/customers/{customer}/{'topups' if req['kind'] == 'topup' else 'grants'}"
        body = {k: v for k, v in req.items() if k != "kind"}
        if effective is not None:
            body["effective_at"] = rfc3339(effective)
        status, grant = self.model.grant_outcome(customer, req, effective or self.now)
        event(f"{req['kind']} {status}")
        r = self.call("POST", path, body)
        assert r.status_code == status, (status, r.text)
        if status in (200, 201):
            assert grant is not None
            got = body_of(r)
            assert (got["created"], Decimal(got["amount"]), got["expires_at"]) == (
                status == 201,
                grant.amount,
                rfc3339(from_us(grant.expires_us)),
            ), r.text
        if status == 201:
            self.pending.add(customer)

    @rule(data=st.data())
    def grant(self, data: st.DataObject) -> None:
        if data.draw(st.booleans(), label="top-up"):
            self._buy_topup(data)
        else:
            self._grant_credit(data)

    def _buy_topup(self, data: st.DataObject) -> None:
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        req = {
            "kind": "topup",
            "feature": data.draw(st.sampled_from(["media", "media", "calls"]), label="feature"),
            "blocks": data.draw(st.integers(1, 2), label="blocks"),
            "id": data.draw(st.sampled_from(["t1", "t2", "t3"]), label="id"),
        }
        self._grant(customer, req, self._past(data, customer))

    def _grant_credit(self, data: st.DataObject) -> None:
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        req = {
            "kind": "credit",
            "feature": data.draw(st.sampled_from(FEATURES), label="feature"),
            "amount": data.draw(
                st.sampled_from([Decimal(5), Decimal("12.5"), Decimal(30)]), label="amount"
            ),
            "id": data.draw(st.sampled_from(["g1", "g2", "t1"]), label="id"),
            "rollover": data.draw(st.booleans(), label="rollover"),
        }
        self._grant(customer, req, self._past(data, customer))

    @rule(data=st.data())
    def change_seats(self, data: st.DataObject) -> None:
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        # A customer that auto-upgrades keeps a seat: with none, a new period would start at its
        # (zero) limit and move its plan by time alone, where the model only re-evaluates it
        # when it changes.
        seats = data.draw(st.integers(1 if customer in AUTO_UPGRADING else 0, 6), label="seats")
        effective = self._past(data, customer)
        body: dict[str, Any] = {"seats": seats}
        if effective is not None:
            body["effective_at"] = rfc3339(effective)
        r = self.call("PATCH", f"/v1/customers/{customer}", body)
        assert r.status_code == 200, r.text
        self.model.add_seats(customer, seats, to_us(effective or self.now))
        self.pending.add(customer)

    @rule(data=st.data())
    def change_plan(self, data: st.DataObject) -> None:
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        plan = data.draw(st.sampled_from([*PLANS, "gold"]), label="plan")
        effective = self._past(data, customer)
        body: dict[str, Any] = {"plan": plan}
        if effective is not None:
            body["effective_at"] = rfc3339(effective)
        r = self.call("POST", f"/v1/customers/{customer}/subscription", body)
        if plan not in self.model.catalog.plans:
            assert r.status_code == 422 and r.json()["error"].startswith("plan: unknown plan"), (
                r.text
            )
            return
        assert r.status_code == 200, r.text
        self.model.add_plan(customer, plan, to_us(effective or self.now))
        self.pending.add(customer)

    @rule(data=st.data())
    def operate(self, data: st.DataObject) -> None:
        """What happens to the service now and then: a catalog applied, or a restart."""
        what = data.draw(st.sampled_from(["catalog", "variant", "restart"]), label="operation")
        if what == "restart":
            self._restart()
        else:
            self._apply_catalog(what == "variant")

    def _apply_catalog(self, variant: bool) -> None:
        doc = VARIANT if variant else CATALOG
        new = validate_catalog(doc)
        changed = sorted(
            m for m, spec in new.meters.items() if self.model.catalog.meters.get(m) != spec
        )
        r = self.call("PUT", "/v1/catalog", doc)
        assert r.status_code == 200 and r.json()["rebuilt_meters"] == changed, r.text
        self.model.catalog = new
        self.pending.update(CUSTOMERS)  # usage and limits may have moved for anyone

    def _restart(self) -> None:
        """A new process on the same database: nothing acknowledged is lost or counted twice."""
        self._stop()
        self._start()

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        kind = data.draw(
            st.sampled_from(["minutes", "hours", "days", "month edge"]), label="advance"
        )
        if kind == "minutes":
            self.clock.advance(minutes=data.draw(st.integers(1, 120), label="minutes"))
        elif kind == "hours":
            self.clock.advance(hours=data.draw(st.integers(1, 36), label="hours"))
        elif kind == "days":
            self.clock.advance(days=data.draw(st.integers(1, 9), label="days"))
        else:  # just before or after the next month starts in one of the customers' zones
            zone = self.model.spec(data.draw(st.sampled_from(CUSTOMERS), label="zone of")).timezone
            edge = calendar_month(self.now, zone).end
            self.clock.now = max(
                self.now, edge + timedelta(minutes=data.draw(st.integers(-30, 30), label="minutes"))
            )

    def _tick(self) -> None:
        """The scheduler's pass: pending evaluations, and levels that time alone crossed."""
        from quotameter.notifications.scheduler import tick

        services = self.app.state.services
        tick(services.engine, services.catalogs, self.clock)

    @rule(data=st.data())
    def read_in_the_past(self, data: st.DataObject) -> None:
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        feature = data.draw(st.sampled_from(FEATURES), label="feature")
        when = self.now - timedelta(
            minutes=data.draw(st.integers(1, 45 * 1440), label="minutes ago")
        )
        r = self.call(
            "GET", f"/v1/customers/{customer}/entitlements/{feature}", params={"at": rfc3339(when)}
        )
        try:
            expected = self.model.balance(customer, feature, when)
        except FeatureMissing:
            assert r.status_code == 404, r.text
            return
        assert r.status_code == 200, r.text
        self._same_balance(expected, body_of(r), f"{customer}/{feature} at {rfc3339(when)}")

    @rule(data=st.data())
    def read_usage(self, data: st.DataObject) -> None:
        """The usage report of a feature over its current period: its total is the balance's
        usage."""
        customer = data.draw(st.sampled_from(CUSTOMERS), label="customer")
        _, plan = self.model.plan_at(customer, to_us(self.now))
        feature = data.draw(st.sampled_from(sorted(plan.entitlements)), label="feature")
        meter = self.model.catalog.meters[plan.entitlements[feature].meter]
        groups = {"duration": "user", "count": "kind", "sum": "kind"}.get(meter.aggregation)
        params = {"feature": feature}
        if groups is not None and data.draw(st.booleans(), label="grouped"):
            params["group_by"] = groups
        windowed = data.draw(st.booleans(), label="per day")
        if windowed:
            params["window"] = "day"
        r = self.call("GET", f"/v1/customers/{customer}/usage", params=params)
        assert r.status_code == 200, r.text
        got = body_of(r)
        usage = self.model.balance(customer, feature, self.now).standing.usage
        assert Decimal(got["total"]) == usage, (usage, got)
        rows = [Decimal(row["usage"]) for row in got["rows"]]
        if meter.aggregation in ("count", "sum") or (
            meter.aggregation == "duration" and not windowed
        ):
            assert sum(rows, Decimal(0)) == usage, (usage, got)  # the rows add up to the whole
        elif meter.aggregation == "gauge":
            assert max(rows) == usage, (usage, got)

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        self._tick()  # the scheduler of a running server keeps up with time
        for customer in sorted(
            self.pending
        ):  # the evaluation the service owes them (auto-upgrades)
            if self.model.evaluate(customer, self.now):
                event("auto-upgrade")
        self.pending.clear()
        for customer in CUSTOMERS:
            self._check_notices(customer)  # first: reading them settles the customer
            self._check_customer(customer)
            self._check_balances(customer)
        self._check_events()
        self._check_levels()

    def _check_customer(self, customer: str) -> None:
        r = self.call("GET", f"/v1/customers/{customer}")
        assert r.status_code == 200, r.text
        got = r.json()
        now_us = to_us(self.now)
        history = [
            {"plan": c.value, "effective_at": rfc3339(from_us(c.effective_us)), "reason": c.reason}
            for c in self.model.plan_history(customer)
        ]
        assert got["plan_changes"] == history, (customer, got["plan_changes"], history)
        assert (got["plan"], got["seats"]) == (
            self.model.plan_at(customer, now_us)[0],
            self.model.seats_at(customer, now_us),
        ), (customer, got)

    def _check_balances(self, customer: str) -> None:
        _, plan = self.model.plan_at(customer, to_us(self.now))
        for feature in sorted(plan.entitlements):
            r = self.call("GET", f"/v1/customers/{customer}/entitlements/{feature}")
            assert r.status_code == 200, r.text
            self._same_balance(
                self.model.balance(customer, feature, self.now), body_of(r), f"{customer}/{feature}"
            )

    @staticmethod
    def _same_balance(expected: Any, got: dict[str, Any], what: str) -> None:
        s = expected.standing
        want = {
            "plan": expected.plan,
            "usage": s.usage,
            "included": s.included,
            "granted": s.granted,
            "limit": s.limit,
            "hard_limit": s.hard_limit,
            "remaining": s.remaining,
            "overage": s.overage,
            "has_access": s.has_access,
            "level": s.level,
            "period": {
                "start": rfc3339(expected.period.start),
                "end": rfc3339(expected.period.end),
            },
        }
        answer = {key: got.get(key) for key in want}
        assert answer == want, f"{what}: the service answers\n  {answer}\nthe model\n  {want}"

    def _check_events(self) -> None:
        with self.app.state.services.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT source, event_id FROM events WHERE source <> :consume"),
                {"consume": CONSUME_SOURCE},
            ).all()
        stored = [(r.source, r.event_id) for r in rows]
        assert len(stored) == len(set(stored)) and set(stored) == set(self.model.events), (
            f"stored {len(stored)} events; acknowledged {len(self.model.events)}; "
            f"missing {set(self.model.events) - set(stored)}; extra "
            f"{set(stored) - set(self.model.events)}"
        )

    def _check_notices(self, customer: str) -> None:
        r = self.call(
            "GET",
            f"/v1/customers/{customer}/notifications",
            params={"after": str(self.seen_notice[customer]), "limit": "1000"},
        )
        assert r.status_code == 200, r.text
        for notice in body_of(r)["notifications"]:
            self.seen_notice[customer] = notice["id"]
            kind = notice["type"]
            if kind not in ("usage.threshold", "usage.exhausted", "access.blocked"):
                continue
            percent = Decimal(notice["percent"]) if kind == "usage.threshold" else None
            level = (customer, notice["feature"], notice["period"]["start"], kind, percent)
            assert level not in self.fired, f"recorded twice without a re-arm: {notice}"
            self.fired.add(level)
            event(f"notice {kind}")

    def _check_levels(self) -> None:
        """Every level the standing has reached now was recorded in this period; a level that
        usage is now below (measured against the limit in force, also a level only another
        plan defines) may fire again: a grant, seat or plan change, or a rebuilt meter, lowered
        the percentage used."""
        now_us = to_us(self.now)
        for customer in CUSTOMERS:
            for feature, ent in self.model.plan_at(customer, now_us)[1].entitlements.items():
                b = self.model.balance(customer, feature, self.now)
                s, start = b.standing, rfc3339(b.period.start)
                for level in [f for f in self.fired if f[:3] == (customer, feature, start)]:
                    percent = HUNDRED if level[3] == "usage.exhausted" else level[4]
                    if (
                        level[3] != "access.blocked"
                        and s.limit is not None
                        and s.usage * HUNDRED < percent * s.limit
                    ):
                        self.fired.discard(level)
                for t in reached(s, thresholds(ent.notify)):
                    level = (
                        customer,
                        feature,
                        start,
                        t.kind,
                        t.percent_used if t.kind == "usage.threshold" else None,
                    )
                    assert level in self.fired, (
                        f"{customer}/{feature} reached {t.key} without a notice: {b}"
                    )
                blocked = (customer, feature, start, "access.blocked", None)
                if s.has_access:
                    self.fired.discard(blocked)
                else:
                    assert blocked in self.fired, (
                        f"{customer}/{feature} is blocked without a notice: {b}"
                    )


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


def test_the_service_agrees_with_its_model(
    db_url: str, clock: Any, tmp_path: Path, sqlite_template: Path
) -> None:
    env = Environment(db_url, sqlite_template, tmp_path, clock)
    ServiceMachine.env = env
    run_state_machine_as_test(ServiceMachine, settings=SETTINGS)
