"""The data behind `quotameter demo`: the four reference policies and a month of usage.

`plan_month` is pure: from a seed and `now` it writes the month so far of eight
organizations as CloudEvents, plus the seat change, credit and top-up made during it, and
the instants at which each organization's day is over.
`load_demo` puts that month through the services the API uses: the events through ingest,
in batches per source; then, in time order, each seat change and grant at its instant and
a notice evaluation at the end of each organization's day, so every notice, and the
auto-upgrade, carries the day it happened rather than the moment of the load (a read at
an instant counts only the events stamped up to it). A last `scheduler.tick` at `now`
evaluates the rest and schedules the crossings that the open streams will make. Nothing
is stamped after `now`.

The organizations (the first four are the catalog's own):

- acme (basic, 10 seats + a guest, UTC): near its limit, a meeting still on at `now`;
- studio (pro): managed-media volume that peaked past the 25 included hours;
- docs (sessions_100k, auto_upgrade): past 100,000 sessions, so moved to sessions_200k;
- callco (connector): participant streams of calls around the clock, some still open;
- brightline (basic, Berlin): comfortably under, a sixth seat added during the month;
- northwind (basic, New York): used exactly its allowance, so blocked;
- kestrel (basic, Tokyo): reached 95 %, then bought a 1,000-minute block;
- orbit (unlimited, Lisbon): heavy use, never blocked.

Usage is generated exactly: every user's meetings are minutes apart, so the generator
knows each user's merged, rounded media (computed with `meters.spans`, the metering
arithmetic itself) and places meetings until each day's running total is reached.

The story needs days behind it: on the 1st of a month nobody has used anything yet, and
studio's billing cycle begins again on the 15th. `story_clock` picks the demo's `now` for a
run at `today`: `today` itself when the current period of every organization, in its own
time zone, began at least `STORY_DAYS` (three) days before; otherwise the latest instant
whole days earlier, at the same time of day, when they all did. On the first three days of
a month (until New York's midnight on the 4th, and from late on the last day, when Tokyo's
next month has begun) that is late in the month before; on the 15th to the 17th, when
studio's new cycle is young, the 14th. With at least three days behind every
organization, every part of the story has happened: northwind is blocked, kestrel reached
95 % and bought its block the morning after, docs moved up a tier, acme is near its limit
with a meeting on, studio's volume peaked past what is included.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from quotameter.catalog import service as catalog_service
from quotameter.catalog.model import Catalog, MeterSpec, load_yaml, validate_catalog
from quotameter.catalog.service import CatalogCache, LoadedCatalog
from quotameter.customers import repository as customer_history
from quotameter.customers import service as customers
from quotameter.entitlements.service import Balance, balance
from quotameter.events.service import ingest
from quotameter.grants import repository as grant_store
from quotameter.grants import service as grants
from quotameter.meters.spans import US, Span, usage_us
from quotameter.notifications import repository as notices
from quotameter.notifications import scheduler
from quotameter.notifications.service import evaluate_all
from quotameter.periods import Period, period_containing
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us

MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR

BATCH = 5000  # events per ingest transaction, like a client posting batches
# When a media organization's working day is over (its meetings end by then), and the
# local time at which round-the-clock organizations are evaluated.
AFTER_WORK_US = 30 * MINUTE
EVENING = time(23, 30)

MEDIA_SOURCE = "rooms.example/media"
CONNECTOR_SOURCE = "rooms.example/audio-connector"
VOLUME_SOURCE = "vault.example/workspaces"
SESSION_SOURCE = "collab.example/docs"


# --- the organizations -----------------------------------------------------------------


def _people(domain: str, *names: str) -> list[str]:
    return [f"{name}@{domain}" for name in names]


ACME = _people(
    "acme.example",
    "ana",
    "ben",
    "chloe",
    "david",
    "elif",
    "farid",
    "grace",
    "hugo",
    "ines",
    "jonas",
) + ["kim@partner.example"]  # a guest: guests count like members
BRIGHTLINE = _people("brightline.example", "lena", "max", "sofia", "paul", "mia")
BRIGHTLINE_HIRE = "emil@brightline.example"  # the sixth seat
NORTHWIND = _people("northwind.example", "maya", "liam", "zoe", "ethan")
KESTREL = _people("kestrel.example", "haruto", "yui", "sota", "aoi", "ren")
ORBIT = _people("orbit.example", "joao", "beatriz", "tiago", "ana", "rui", "marta", "pedro", "ines")
CALLCO_AGENTS = _people(
    "callco.example",
    "agent.mia",
    "agent.noah",
    "agent.olivia",
    "agent.lucas",
    "agent.amara",
    "agent.kenji",
    "agent.sara",
    "agent.omar",
)

EXTRA_CUSTOMERS: dict[str, dict[str, Any]] = {
    "brightline": {
        "plan": "basic",
        "seats": 5,
        "admins": [BRIGHTLINE[0]],
        "members": [*BRIGHTLINE, BRIGHTLINE_HIRE],
        "timezone": "Europe/Berlin",
    },
    "northwind": {
        "plan": "basic",
        "seats": 4,
        "admins": [NORTHWIND[0]],
        "owner": NORTHWIND[1],
        "members": NORTHWIND,
        "timezone": "America/New_York",
    },
    "kestrel": {
        "plan": "basic",
        "seats": 5,
        "admins": [KESTREL[0]],
        "members": KESTREL,
        "timezone": "Asia/Tokyo",
    },
    "orbit": {
        "plan": "unlimited",
        "seats": 8,
        "admins": [ORBIT[0]],
        "members": ORBIT,
        "timezone": "Europe/Lisbon",
    },
}

# The summary's rows: each organization and the feature its story is about.
SHOWN: list[tuple[str, str]] = [
    ("acme", "media"),
    ("brightline", "media"),
    ("northwind", "media"),
    ("kestrel", "media"),
    ("orbit", "media"),
    ("studio", "managed_media"),
    ("docs", "sessions"),
    ("callco", "audio_connector"),
]


def demo_catalog() -> dict[str, Any]:
    """The catalog of the four reference policies, with the demo's extra organizations."""
    doc = load_yaml(files("quotameter.demo").joinpath("catalog.yaml").read_text())
    assert isinstance(doc, dict)
    doc["customers"].update({key: dict(spec) for key, spec in EXTRA_CUSTOMERS.items()})
    return doc


# --- the demo's clock ---------------------------------------------------------------------

STORY_DAYS = 3  # how long every organization's current period must have run for its story
LONGEST_STEP_BACK = 31  # days: past that the catalog has a period the rule cannot satisfy


def story_clock(today: datetime, catalog: Catalog | None = None) -> datetime:
    """The demo's `now` for a run at `today`: `today` when every organization's current
    period began `STORY_DAYS` or more before it, else the latest instant whole days earlier,
    at the same time of day, when they all had (of the demo catalog by default)."""
    if today.tzinfo is None:
        raise ValueError("today: must be an aware datetime")
    catalog = catalog or validate_catalog(demo_catalog())
    now = today.astimezone(UTC)
    for _ in range(LONGEST_STEP_BACK + 1):
        if all(
            now - _period_of(catalog, customer, now).start >= timedelta(days=STORY_DAYS)
            for customer, _feature in SHOWN
        ):
            return now
        now -= timedelta(days=1)
    raise ValueError(
        f"the demo catalog has a period younger than {STORY_DAYS} days on every day of a month"
    )


def _period_of(catalog: Catalog, customer: str, at: datetime) -> Period:
    """The period of the organization's story (its plan's first feature) that contains `at`."""
    spec = catalog.customers[customer]
    entitlement = next(iter(catalog.plans[spec.plan].entitlements.values()))
    return period_containing(entitlement.period, at, tz=spec.timezone, anchor=spec.billing_anchor)


# --- what happens in the month -----------------------------------------------------------


@dataclass(frozen=True)
class CustomerChange:
    """PATCH /v1/customers/{customer}: seats (kept as history) and members."""

    customer: str
    at_us: int
    seats: int | None = None
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class GrantChange:
    customer: str
    feature: str
    grant_id: str
    kind: str  # topup | credit
    at_us: int
    blocks: int | None = None
    amount: Decimal | None = None


Operation = CustomerChange | GrantChange


@dataclass
class DemoMonth:
    """Events in time order (`times` holds their instants), the operations made between
    them, and when each organization's day was over (when its notices are evaluated)."""

    start_us: int  # the earliest period start: nothing of the demo is older
    times: list[int]
    events: list[dict[str, Any]]
    operations: list[Operation]
    checks: list[tuple[int, str]]  # (instant, customer)


def plan_month(catalog: Catalog, now: datetime, seed: int = 7) -> DemoMonth:
    """The month so far of every demo organization; pure, and the same for the same seed and now."""
    now_us = to_us(now)
    stories: list[Callable[[_Story], None]] = [
        _acme,
        _brightline,
        _northwind,
        _kestrel,
        _orbit,
        _studio,
        _docs,
        _callco,
    ]
    timed: list[tuple[int, dict[str, Any]]] = []
    operations: list[Operation] = []
    checks: list[tuple[int, str]] = []
    starts: list[int] = []
    for story in stories:
        s = _Story(catalog, story.__name__.lstrip("_"), now_us, seed)
        story(s)
        timed += s.events
        operations += s.operations
        checks += [(t, s.customer) for t in s.checks]
        starts.append(s.period_lo)
    timed.sort(key=lambda item: item[0])  # stable: same-instant events keep their story's order
    operations.sort(key=lambda op: op.at_us)
    return DemoMonth(
        min(starts), [t for t, _ in timed], [ev for _, ev in timed], operations, sorted(checks)
    )


class _Story:
    """One organization's month: its period, its random stream, the events it sends."""

    def __init__(self, catalog: Catalog, customer: str, now_us: int, seed: int) -> None:
        self.catalog, self.customer, self.now_us = catalog, customer, now_us
        self.spec = catalog.customers[customer]
        self.zone = ZoneInfo(self.spec.timezone)
        # A string seed is hashed with SHA-512, so each organization's stream is the same in
        # every process and independent of the others.
        self.rng = random.Random(f"{seed}/{customer}")
        self.period: Period = _period_of(catalog, customer, from_us(now_us))
        self.period_lo, self.period_hi = to_us(self.period.start), to_us(self.period.end)
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.operations: list[Operation] = []
        self.checks: list[int] = []
        self._count = 0

    def day_over(self, at_us: int) -> None:
        """The organization's day is over at `at`: the server would have evaluated it by then."""
        if self.period_lo < at_us <= self.now_us:
            self.checks.append(at_us)

    def every_evening(self) -> None:
        day = from_us(self.period_lo).astimezone(self.zone).date()
        while (at := to_us(datetime.combine(day, EVENING, self.zone))) <= self.now_us:
            self.day_over(at)
            day += timedelta(days=1)

    def emit(self, t_us: int, source: str, type_: str, data: dict[str, Any]) -> None:
        assert self.period_lo <= t_us <= self.now_us, (
            "the demo writes only the current period up to now"
        )
        self._count += 1
        self.events.append(
            (
                t_us,
                {
                    "specversion": "1.0",
                    "id": f"{self.customer}-{self._count:06d}",
                    "source": source,
                    "type": type_,
                    "subject": self.customer,
                    "time": _stamp(t_us),
                    "data": data,
                },
            )
        )

    def emit_sorted(self, source: str, type_: str, items: list[tuple[int, dict[str, Any]]]) -> None:
        """`emit` for many events in time order, in a tighter loop (a hundred thousand sessions)."""
        if not items:
            return
        assert self.period_lo <= items[0][0] and items[-1][0] <= self.now_us
        customer, append, n = self.customer, self.events.append, self._count
        for n, (t_us, data) in enumerate(items, n + 1):
            append(
                (
                    t_us,
                    {
                        "specversion": "1.0",
                        "id": f"{customer}-{n:06d}",
                        "source": source,
                        "type": type_,
                        "subject": customer,
                        "time": _stamp(t_us),
                        "data": data,
                    },
                )
            )
        self._count = n

    def windows(self) -> list[tuple[int, int]]:
        """Working hours (Monday to Friday, 09:00 to 18:00 local time) begun by now; the last
        may run past it. Early in a month, with fewer than three such days, every day from
        07:00 to 22:00."""
        found = _local_windows(self.zone, self.period_lo, self.now_us, (9, 18), weekdays_only=True)
        if len(found) >= 3:
            return found
        return _local_windows(self.zone, self.period_lo, self.now_us, (7, 22), weekdays_only=False)

    def goals(self, windows: list[tuple[int, int]], total: int) -> list[int]:
        """Running totals at the end of each window, reaching `total` at the last: busier and
        quieter days, lighter Fridays, today only as far as it went."""
        weights = []
        for lo, hi in windows:
            w = self.rng.uniform(0.75, 1.25)
            if from_us(lo).astimezone(self.zone).weekday() == 4:
                w *= 0.7
            weights.append(w * (min(hi, self.now_us) - lo) / (hi - lo))
        return _running(weights, total)


_DAYS: dict[int, str] = {}
_CLOCKS: list[str] = []


def _stamp(t_us: int) -> str:
    """RFC 3339 in UTC, as `timeutil.rfc3339` writes it. It runs a hundred thousand times,
    so dates and times of day are formatted once."""
    if not _CLOCKS:
        _CLOCKS.extend(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400))
    day, us = divmod(t_us, DAY)
    text = _DAYS.get(day)
    if text is None:
        text = _DAYS[day] = from_us(day * DAY).date().isoformat()
    seconds, fraction = divmod(us, US)
    return f"{text}{_CLOCKS[seconds]}.{fraction:06d}Z" if fraction else f"{text}{_CLOCKS[seconds]}Z"


def _local_windows(
    zone: ZoneInfo, lo_us: int, now_us: int, hours: tuple[int, int], weekdays_only: bool
) -> list[tuple[int, int]]:
    day = from_us(lo_us).astimezone(zone).date()
    last = from_us(now_us).astimezone(zone).date()
    out = []
    while day <= last:
        if not weekdays_only or day.weekday() < 5:
            a = max(lo_us, _local(zone, day, hours[0]))
            b = _local(zone, day, hours[1])
            if a < min(b, now_us):
                out.append((a, b))
        day += timedelta(days=1)
    return out


def _local(zone: ZoneInfo, day: date, hour: int) -> int:
    return to_us(datetime.combine(day, time(hour), zone))


def _running(weights: list[float], total: int) -> list[int]:
    whole = sum(weights) or 1.0
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(round(total * acc / whole))
    if out:
        out[-1] = total
    return out


# --- media meetings ------------------------------------------------------------------------

DURATIONS = [15, 15, 20, 25, 30, 30, 30, 45, 45, 50, 60, 60, 90]  # minutes
SIZES = [2, 2, 2, 3, 3, 3, 4, 5]
ROOMS = [
    "stand-up",
    "design-review",
    "planning",
    "one-on-one",
    "customer-call",
    "all-hands",
    "pairing",
    "retro",
]
LATE_JOIN_S = 90
LEAVE_S = 60  # people leave up to a minute before or after the end
APART_US = 5 * MINUTE  # a user's meetings are at least this far apart, so their media never merges
HEARTBEAT_US = 5 * MINUTE
MAX_SOLO = 45  # minutes
ATTEMPTS = 80


@dataclass
class _Stream:
    kind: str
    user: str
    segments: list[tuple[int, int]]  # planned (start, stop); only what happened by now is sent


class _Meetings:
    """A media organization's meetings, placed until each day's running total is reached.

    Each user's meetings are apart, so the usage of a meeting is its own: the merged,
    rounded media of its participants as the meter counts them at `now`.
    """

    def __init__(self, story: _Story, users: list[str], meter: str = "media_minutes") -> None:
        self.story, self.rng, self.now_us = story, story.rng, story.now_us
        self.spec: MeterSpec = story.catalog.meters[meter]
        self.users = list(users)
        self.joined: dict[str, int] = {u: 0 for u in users}
        self.busy: dict[str, list[tuple[int, int]]] = {u: [] for u in users}
        self.used = 0  # minutes metered so far

    def hire(self, user: str, at_us: int) -> None:
        self.users.append(user)
        self.joined[user] = at_us
        self.busy[user] = []

    def fill(self, window: tuple[int, int], goal: int) -> None:
        failures = 0
        while self.used < goal and failures < ATTEMPTS:
            if not self._meeting(window, goal - self.used):
                failures += 1

    def ongoing(self, minutes_ago: int, size: int) -> None:
        """A meeting that started a little before now and is still on."""
        start = self.now_us - minutes_ago * MINUTE
        if start < self.story.period_lo:
            return
        free = [u for u in self.users if self._free(u, start, start + 60 * MINUTE)]
        if free:
            people = self.rng.sample(free, min(size, len(free)))
            self._commit(self._streams(people, start, 60), start, start + 60 * MINUTE)

    def _meeting(self, window: tuple[int, int], gap: int) -> bool:
        lo, hi = window
        rng = self.rng
        minutes = rng.choice(DURATIONS)
        slots = (hi - lo - minutes * MINUTE) // (5 * MINUTE)
        if slots < 0:
            return False
        start = lo + 5 * MINUTE * rng.randint(0, slots)
        if start >= self.now_us:
            return False
        end = start + minutes * MINUTE
        free = [u for u in self.users if self._free(u, start, end)]
        if not free:
            return False
        people = rng.sample(free, min(len(free), rng.choice(SIZES)))
        streams = self._streams(people, start, minutes)
        while self._metered(streams) > gap and len(people) > 1:
            people.pop()
            streams = [s for s in streams if s.user in people]
        if self._metered(streams) > gap:
            # The day's last minutes: one person, exactly what is left (a short recording).
            length = min(gap, MAX_SOLO)
            if start + length * MINUTE > self.now_us:
                return False
            user, end = people[0], start + length * MINUTE
            streams = [_Stream("mic", user, [(start, end)])]
            if length >= 2:
                streams.append(_Stream("camera", user, [(start + 10 * US, end - 10 * US)]))
        if self._metered(streams) == 0:  # nobody's media had begun by now
            return False
        self._commit(streams, start, end)
        return True

    def _streams(self, people: list[str], start: int, minutes: int) -> list[_Stream]:
        """Who turned on what: mics (sometimes muted a while), cameras, one screen share;
        in larger meetings some only listen, which the meter's filter leaves out."""
        rng = self.rng
        end = start + minutes * MINUTE
        out: list[_Stream] = []
        for i, user in enumerate(people):
            join = start + rng.randint(0, LATE_JOIN_S) * US
            leave = end + rng.randint(-LEAVE_S, LEAVE_S) * US
            if i > 0 and len(people) >= 3 and rng.random() < 0.2:
                out.append(_Stream("listen", user, [(join, leave)]))
                continue
            length_s = (leave - join) // US
            if length_s > 12 * 60 and rng.random() < 0.5:
                off = join + rng.randint(180, length_s // 2) * US
                back = off + rng.randint(60, 360) * US
                out.append(_Stream("mic", user, [(join, off), (back, leave)]))
            else:
                out.append(_Stream("mic", user, [(join, leave)]))
            if rng.random() < 0.6:
                out.append(
                    _Stream(
                        "camera",
                        user,
                        [(join + rng.randint(5, 40) * US, leave - rng.randint(0, 30) * US)],
                    )
                )
            if i == 0 and rng.random() < 0.5:
                shown = join + rng.randint(60, 300) * US
                out.append(
                    _Stream(
                        "screen",
                        user,
                        [
                            (
                                shown,
                                min(leave, shown + rng.randint(5, max(5, minutes // 2)) * MINUTE),
                            )
                        ],
                    )
                )
        return out

    def _metered(self, streams: list[_Stream]) -> int:
        """Minutes the meter counts for these streams at now."""
        spec = self.spec
        by_user: dict[str, list[Span]] = {}
        for s in streams:
            if not spec.matches({"kind": s.kind}):
                continue
            for a, b in s.segments:
                if a < self.now_us:
                    span = (
                        Span(a, b, b)
                        if b <= self.now_us
                        else Span(a, None, _last_heartbeat(a, self.now_us))
                    )
                    by_user.setdefault(s.user, []).append(span)
        rounding = spec.rounding
        total = usage_us(
            by_user,
            self.story.period_lo,
            self.story.period_hi,
            self.now_us,
            idle_timeout_us=spec.idle_timeout * US if spec.idle_timeout else None,
            unit_us=rounding.unit_seconds * US if rounding else None,
            mode=rounding.mode if rounding else "ceil",
        )
        return total // MINUTE

    def _free(self, user: str, start: int, end: int) -> bool:
        if self.joined[user] > start:
            return False
        hi = end + LEAVE_S * US
        return all(b + APART_US <= start or a >= hi + APART_US for a, b in self.busy[user])

    def _commit(self, streams: list[_Stream], start: int, end: int) -> None:
        self.used += self._metered(streams)
        room = self.rng.choice(ROOMS)
        for user in dict.fromkeys(s.user for s in streams):
            self.busy[user].append((start, end + LEAVE_S * US))
        for s in streams:
            for a, b in s.segments:
                if a >= self.now_us:
                    continue
                data = {
                    "user": s.user,
                    "stream": f"{s.user}/{s.kind}",
                    "kind": s.kind,
                    "room": room,
                }
                self.story.emit(a, MEDIA_SOURCE, "media.activity", {**data, "action": "start"})
                for beat in range(a + HEARTBEAT_US, min(b, self.now_us + 1), HEARTBEAT_US):
                    self.story.emit(
                        beat, MEDIA_SOURCE, "media.activity", {**data, "action": "heartbeat"}
                    )
                if b <= self.now_us:
                    self.story.emit(b, MEDIA_SOURCE, "media.activity", {**data, "action": "stop"})


def _last_heartbeat(start: int, now_us: int) -> int:
    return start + (now_us - start) // HEARTBEAT_US * HEARTBEAT_US


def _limit(story: _Story, seats: int) -> int:
    allowance = story.catalog.plans[story.spec.plan].entitlements["media"].allowance
    assert allowance is not None and allowance.per_seat is not None
    return int(allowance.per_seat) * seats


def _media(story: _Story, users: list[str], total: int, *, ongoing: bool = False) -> None:
    meetings = _Meetings(story, users)
    windows = story.windows()
    for k, (window, goal) in enumerate(zip(windows, story.goals(windows, total))):
        if ongoing and k == len(windows) - 1:
            meetings.ongoing(story.rng.randint(20, 45), 3)
        meetings.fill(window, goal)
        story.day_over(window[1] + AFTER_WORK_US)


def _acme(story: _Story) -> None:
    """Near its limit (about 90 %), after an operator's credit early in the month; a meeting is on at now.
    The catalog names only its admin: the team is listed as members on the first morning."""
    windows = story.windows()
    if windows:
        at = max(story.period_lo, windows[0][0] - 30 * MINUTE)
        story.operations.append(CustomerChange("acme", at, members=tuple(ACME[:-1])))
    credit = Decimal(250)
    at = windows[1][0] + HOUR + 12 * MINUTE if len(windows) > 1 else story.now_us + 1
    if at <= story.now_us:
        story.operations.append(
            GrantChange("acme", "media", "demo-acme-outage-credit", "credit", at, amount=credit)
        )
    else:
        credit = Decimal(0)
    limit = _limit(story, story.spec.seats) + int(credit)
    _media(story, ACME, round(limit * 0.905), ongoing=True)


def _brightline(story: _Story) -> None:
    """Comfortably under (about 40 %); a new hire took a sixth seat a third into the month."""
    windows = story.windows()
    meetings = _Meetings(story, BRIGHTLINE)
    seats = story.spec.seats
    hire_at = len(windows) // 3
    if len(windows) > 1:
        seats += 1
    goals = story.goals(windows, round(_limit(story, seats) * 0.40))
    for k, (window, goal) in enumerate(zip(windows, goals)):
        if k == hire_at and seats > story.spec.seats:
            at = max(story.period_lo, window[0] - HOUR)  # 08:00, before the day's first meeting
            story.operations.append(CustomerChange("brightline", at, seats=seats))
            meetings.hire(BRIGHTLINE_HIRE, at)
        meetings.fill(window, goal)
        story.day_over(window[1] + AFTER_WORK_US)


def _northwind(story: _Story) -> None:
    """Used exactly its allowance three quarters into the month: blocked since, no more media."""
    limit = _limit(story, story.spec.seats)
    windows = story.windows()
    goals = [min(limit, g) for g in story.goals(windows, round(limit / 0.75))]
    meetings = _Meetings(story, NORTHWIND)
    for window, goal in zip(windows, goals):
        meetings.fill(window, goal)
        story.day_over(window[1] + AFTER_WORK_US)
        if meetings.used >= limit:
            break


def _kestrel(story: _Story) -> None:
    """Reached 95 % two thirds into the month, bought a 1,000-minute block the next morning,
    and went on using it: 82 % of the raised limit by now."""
    base = _limit(story, story.spec.seats)
    block = story.catalog.plans[story.spec.plan].entitlements["media"].topup
    assert block is not None
    windows = story.windows()
    total = round((base + int(block.block_size)) * 0.82)
    # The top-up's morning: after one working day at least, and on one begun by now.
    morning = max(1, min(len(windows) - 1, round(len(windows) * 2 / 3)))
    reached = base * 96 // 100
    goals = story.goals(windows[:morning], reached)
    goals += [reached + g for g in story.goals(windows[morning:], total - reached)]
    meetings = _Meetings(story, KESTREL)
    cap = base * 97 // 100  # short of the block until the top-up
    topped_up = False
    for window, goal in zip(windows, goals):
        if not topped_up and meetings.used >= base * 95 // 100:
            at = window[0] - 15 * MINUTE  # 08:45, the morning after the 95 % e-mail
            story.operations.append(
                GrantChange("kestrel", "media", "demo-kestrel-topup-1", "topup", at, blocks=1)
            )
            topped_up = True
        meetings.fill(window, goal if topped_up else min(goal, cap))
        story.day_over(window[1] + AFTER_WORK_US)


def _orbit(story: _Story) -> None:
    """The unlimited plan: heavy use, never blocked."""
    _media(story, ORBIT, story.rng.randint(7200, 8400), ongoing=True)


# --- managed media volume (a gauge) -------------------------------------------------------

QUARTER = Decimal("0.25")
PROJECTS = [
    "ep-101",
    "ep-102",
    "ep-103",
    "ep-104",
    "promo-spring",
    "interviews",
    "b-roll",
    "archive-2025",
]


def _studio(story: _Story) -> None:
    """A workspace's volume: carried into the cycle, rising with new footage to a peak of
    30.25 hours (25 included: in overage), then archived down a little."""
    rng = story.rng
    story.every_evening()
    opening, peak = Decimal("17.5"), Decimal("30.25")
    story.emit(
        story.period_lo,
        VOLUME_SOURCE,
        "media.volume",
        {
            "workspace": "studio",
            "asset": "library",
            "action": "carried_over",
            "hours_delta": str(opening),
        },
    )
    windows = story.windows()
    instants = sorted(
        rng.randint(lo, min(hi, story.now_us))
        for lo, hi in windows
        for _ in range(rng.randint(2, 4))
    )
    if len(instants) < 2:
        return
    rise = int((peak - opening) / QUARTER)  # in quarter hours
    n_up = max(1, min(rise, round(len(instants) * 0.6)))
    cuts = sorted(rng.sample(range(1, rise), n_up - 1)) if n_up > 1 else []
    ups = [b - a for a, b in zip([0, *cuts], [*cuts, rise])]
    level = opening
    for t, quarters in zip(instants, ups):
        level += quarters * QUARTER
        story.emit(
            t,
            VOLUME_SOURCE,
            "media.volume",
            {
                "workspace": "studio",
                "asset": f"{rng.choice(PROJECTS)}/{rng.randint(1, 400):03d}.mxf",
                "action": "ingested",
                "hours_delta": str(quarters * QUARTER),
            },
        )
    for t in instants[n_up:]:
        if level > Decimal(26) or (level > Decimal("24.5") and rng.random() < 0.6):
            delta = -QUARTER * rng.randint(1, min(8, int((level - Decimal(24)) / QUARTER)))
            action = "archived"
        else:
            delta = QUARTER * rng.randint(1, 3)
            action = "ingested"
        level += delta
        story.emit(
            t,
            VOLUME_SOURCE,
            "media.volume",
            {
                "workspace": "studio",
                "asset": f"{rng.choice(PROJECTS)}/{rng.randint(1, 400):03d}.mxf",
                "action": action,
                "hours_delta": str(delta),
            },
        )


# --- co-editing sessions (a count) --------------------------------------------------------

# Sessions by UTC hour: Europe's day, then the Americas'.
HOURLY = [2, 1, 1, 1, 2, 3, 6, 9, 11, 12, 12, 11, 10, 11, 13, 14, 14, 13, 11, 9, 7, 5, 4, 3]


def _docs(story: _Story) -> None:
    """A busy tenant, growing through the month: its 100,000 sessions ran out yesterday
    (in the first week of a month: by now), and it moved up to the next tier (the auto-upgrade)."""
    rng = story.rng
    story.every_evening()
    day = from_us(story.period_lo).astimezone(UTC).date()
    days: list[tuple[int, list[int]]] = []  # (day start, the hours begun by now)
    weights: list[float] = []
    while (lo := to_us(datetime.combine(day, time(0), UTC))) < story.now_us:
        hours = [
            h
            for h in range(24)
            if lo + h * HOUR < story.now_us and lo + h * HOUR >= story.period_lo
        ]
        growth = 1 + 0.02 * len(days)
        busy = 1.0 if day.weekday() < 5 else 0.45
        done = sum(HOURLY[h] * min(HOUR, story.now_us - lo - h * HOUR) / HOUR for h in hours) / sum(
            HOURLY
        )
        days.append((lo, hours))
        weights.append(growth * busy * done * rng.uniform(0.9, 1.1))
        day += timedelta(days=1)
    allowance = story.catalog.plans[story.spec.plan].entitlements["sessions"].allowance
    assert allowance is not None and allowance.fixed is not None
    passed = int(allowance.fixed) + rng.randint(300, 900)  # by the end of the day it ran out
    before = sum(weights[:-1])
    total = round(passed * sum(weights) / before) if len(days) > 7 and before else passed
    running = _running(weights, total)
    previous = serial = 0
    random_ = rng.random  # rng.randint is ten times slower, and this runs per session
    for (lo, hours), upto in zip(days, running):
        n, previous = upto - previous, upto
        if not hours or n <= 0:
            continue
        picked = rng.choices(hours, weights=[HOURLY[h] for h in hours], k=n)
        instants = sorted(
            lo + h * HOUR + int(random_() * (min(HOUR, story.now_us - lo - h * HOUR) // US)) * US
            for h in picked
        )
        sessions = []
        for serial, t in enumerate(instants, serial + 1):
            sessions.append(
                (
                    t,
                    {
                        "session": f"ses_{serial:06d}",
                        "document": f"doc-{1 + int(random_() * 2400):04d}",
                    },
                )
            )
        story.emit_sorted(SESSION_SOURCE, "session.created", sessions)


# --- participant streaming minutes (duration, never merged) -------------------------------


def _callco(story: _Story) -> None:
    """A contact centre sends each participant's audio to the connector: calls around the
    clock, busiest in the day; two participants sometimes share one connection (still two
    streams); someone who never connects costs nothing; a few calls are on at now."""
    rng = story.rng
    day = from_us(story.period_lo).astimezone(story.zone).date()
    calls = 0
    while (lo := _local(story.zone, day, 0)) < story.now_us:
        for _ in range(rng.randint(5, 9) if day.weekday() < 5 else rng.randint(1, 3)):
            hour = rng.choices(range(24), weights=HOURLY)[0]
            start = lo + hour * HOUR + rng.randrange(HOUR // US) * US
            if story.period_lo <= start < story.now_us:
                calls += 1
                _call(story, calls, start, rng.choice([3, 4, 6, 8, 10, 12, 15, 20, 25, 35]))
        day += timedelta(days=1)
    for minutes_ago in (4, 11, 23):  # still on
        start = story.now_us - minutes_ago * MINUTE
        if start >= story.period_lo:
            calls += 1
            _call(story, calls, start, 40)


def _call(story: _Story, number: int, start: int, minutes: int) -> None:
    rng = story.rng
    call = f"call-{number:05d}"
    end = start + minutes * MINUTE
    agent = rng.choice(CALLCO_AGENTS)
    people = [agent] + [
        f"caller-{rng.randint(1000, 9999)}" for _ in range(rng.choice([1, 1, 2, 3]))
    ]
    shared = len(people) > 2 and rng.random() < 0.3
    for k, who in enumerate(people):
        if k > 0 and len(people) > 2 and rng.random() < 0.2:
            continue  # joined the call but never opened a connection: nothing to meter
        connection = f"{call}/ws-1" if shared and k > 0 else f"{call}/ws-{k}"
        data = {
            "stream_id": f"{call}/p{k}",
            "call": call,
            "connection": connection,
            "participant": who,
        }
        a = start + rng.randint(0, 60) * US
        b = max(a + 30 * US, end - rng.randint(0, 60) * US)
        if a > story.now_us:
            continue
        story.emit(a, CONNECTOR_SOURCE, "connector.stream", {**data, "action": "start"})
        if b <= story.now_us:
            story.emit(b, CONNECTOR_SOURCE, "connector.stream", {**data, "action": "stop"})


# --- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgState:
    customer: str
    plan: str
    feature: str
    state: str  # for people: "near its limit: 90.5 % of 5,250 minutes used"
    usage: Decimal
    limit: Decimal | None
    unit: str


@dataclass(frozen=True)
class DemoSummary:
    now: datetime
    organizations: list[OrgState]
    events: int  # events loaded (sent to ingest)
    notices: int  # notices recorded
    catalog_version: int

    def table(self) -> list[tuple[str, str, str, str]]:
        """(customer, plan, feature, state) per organization, for printing."""
        return [(o.customer, o.plan, o.feature, o.state) for o in self.organizations]


def load_demo(engine: Engine, now: datetime, seed: int = 7) -> DemoSummary:
    """Apply the demo catalog and load a month of usage up to `now` into a migrated, empty
    database (loading again with the same seed and now adds nothing)."""
    if now.tzinfo is None:
        raise ValueError("now: must be an aware datetime")
    now = now.astimezone(UTC)
    now_us = to_us(now)
    doc = demo_catalog()
    spec = validate_catalog(doc)
    month = plan_month(spec, now, seed)
    catalogs = CatalogCache()
    with unit_of_work(engine) as conn:
        current = catalogs.current(conn)
        version = current.version
        if current.spec != spec:
            version = catalog_service.apply(conn, doc, current, month.start_us).version

    by_source: dict[str, list[dict[str, Any]]] = {}
    for ev in month.events:
        by_source.setdefault(ev["source"], []).append(ev)
    # Each producer posts its own batches.
    accepted = sum(_ingest(engine, catalogs, events, now_us) for events in by_source.values())

    if accepted:  # else this month was loaded before: its evaluations would only repeat its notices
        for at_us, operation, names in _timeline(month):
            if operation is not None:
                _apply(engine, catalogs, operation)
                continue
            with unit_of_work(engine) as conn:
                catalog = catalogs.current(conn)
                for customer in names:
                    evaluate_all(conn, catalog, customer, from_us(at_us), at_us)
    # Evaluates what the last evenings left (every customer is pending since the ingest)
    # and schedules the crossings that the streams still open at `now` will make.
    scheduler.tick(engine, catalogs, lambda: now)

    with engine.connect() as conn:
        catalog = catalogs.current(conn)
        rows = [_state(conn, catalog, customer, feature, now) for customer, feature in SHOWN]
        recorded = sum(len(notices.listing(conn, customer, limit=100_000)) for customer, _ in SHOWN)
    return DemoSummary(now, rows, len(month.events), recorded, version)


def _timeline(month: DemoMonth) -> Iterator[tuple[int, Operation | None, list[str]]]:
    """The operations and the evenings' evaluations (customers evaluated together), in time order."""
    evenings: dict[int, list[str]] = {}
    for at_us, customer in month.checks:
        evenings.setdefault(at_us, []).append(customer)
    moments: list[tuple[int, int, Operation | None, list[str]]] = [
        (op.at_us, 0, op, []) for op in month.operations
    ]
    moments += [(at_us, 1, None, names) for at_us, names in evenings.items()]
    for at_us, _, operation, names in sorted(moments, key=lambda m: (m[0], m[1])):
        yield at_us, operation, names


def _ingest(
    engine: Engine, catalogs: CatalogCache, events: list[dict[str, Any]], received_us: int
) -> int:
    """Post `events` in batches; how many were new."""
    accepted = 0
    for k in range(0, len(events), BATCH):
        with unit_of_work(engine) as conn:
            result = ingest(conn, catalogs.current(conn), events[k : k + BATCH], received_us)
        if result.rejected:  # the generator's mistake, never the data's
            raise RuntimeError(f"demo events rejected: {result.rejected[:3]}")
        accepted += result.accepted
    return accepted


def _apply(engine: Engine, catalogs: CatalogCache, op: Operation) -> None:
    """A change made by an operator at its instant, followed by what the API does after it:
    evaluate the customer there (a raised limit re-arms its notices). Its wake-ups are
    scheduled by the last tick, from `now`: from a past instant they would see the events
    that came after it."""
    at = from_us(op.at_us)
    with unit_of_work(engine) as conn:
        catalog = catalogs.current(conn)
        if isinstance(op, CustomerChange):
            customers.change(
                conn,
                catalog,
                op.customer,
                seats=op.seats,
                settings={"members": list(op.members)} if op.members else {},
                effective_us=op.at_us,
                recorded_us=op.at_us,
            )
        else:
            req = grants.GrantRequest(
                op.customer, op.grant_id, op.feature, op.kind, amount=op.amount, blocks=op.blocks
            )
            grant, created = grants.add(conn, catalog, req, at, op.at_us)
            if not created:
                return  # loaded before
        evaluate_all(conn, catalog, op.customer, at, op.at_us)


# --- the summary --------------------------------------------------------------------------


def _state(
    conn: Connection, catalog: LoadedCatalog, customer: str, feature: str, now: datetime
) -> OrgState:
    b = balance(conn, catalog, customer, feature, now)
    upgrades = [
        h for h in customer_history.plan_history(conn, customer) if h.reason == "auto_upgrade"
    ]
    extras = [
        g
        for g in grant_store.listing(conn, customer)
        if g.feature == feature and to_us(b.period.start) <= g.effective_us <= to_us(now)
    ]
    state = describe(
        b,
        upgraded_at=from_us(upgrades[-1].effective_us) if upgrades else None,
        was=catalog.spec.customers[customer].plan,
        topups=sum(g.blocks or 0 for g in extras if g.kind == "topup"),
        credits=sum((Decimal(g.amount) for g in extras if g.kind == "credit"), Decimal(0)),
    )
    return OrgState(customer, b.plan, feature, state, b.usage, b.standing.limit, b.unit)


def describe(
    b: Balance,
    *,
    upgraded_at: datetime | None = None,
    was: str = "",
    topups: int = 0,
    credits: Decimal = Decimal(0),
) -> str:
    """A feature's standing in a few words, from the balance alone (plus how it got there)."""
    s = b.standing
    unit = b.unit
    if s.limit is None:
        return f"no limit: {_num(s.usage)} {_units(unit, s.usage)} used this period"
    used = f"{_pct(s.usage, s.limit)} of {_num(s.limit)} {_units(unit, s.limit)} used"
    if not s.has_access:
        text = f"blocked: {used}; members told in-app"
    elif s.level is not None and s.overage > 0:
        text = (
            f"in overage: peaked at {_num(s.usage)} of {_num(s.limit)} {_units(unit, s.limit)} "
            f"({_num(s.overage)} billed as overage); level now {_num(s.level)}"
        )
    elif s.overage > 0:
        text = f"past its limit: {used}, within the slack"
    elif s.usage * 100 >= _near(b) * s.limit:
        text = f"near its limit: {used}"
    else:
        text = f"comfortably under: {used}"
    if upgraded_at is not None:
        text = f"auto-upgraded from {was} on {upgraded_at.astimezone(ZoneInfo(b.view.spec.timezone)):%d %b}; {text}"
    if topups:
        text += f"; bought {topups} top-up block{'s' if topups > 1 else ''}"
    if credits:
        text += f"; {_num(credits)}-{unit} credit"
    return text


def _near(b: Balance) -> Decimal:
    notify = b.entitlement.notify
    levels = [Decimal(p) for p in notify.percent_used] if notify else []
    levels += [100 - Decimal(r) for r in notify.percent_remaining] if notify else []
    return min(levels, default=Decimal(80))


def _pct(part: Decimal, whole: Decimal) -> str:
    if whole == 0:
        return "100 %"
    return f"{_num((part * 100 / whole).quantize(Decimal('0.1'), rounding=ROUND_DOWN))} %"


def _num(value: Decimal) -> str:
    value = value.normalize()
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value:,f}"


def _units(unit: str, value: Decimal) -> str:
    return unit if value == 1 else f"{unit}s"
