"""The demo's month, made from the scenario: `plan_month` is pure: from a seed and `now` it
writes the month so far of the eight organizations of `quotameter.demo.scenario` as
CloudEvents, plus the seat changes, credit and top-up made during it, and the instants at
which each organization's day is over.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from quotameter.catalog.model import Catalog, MeterSpec, load_yaml, validate_catalog
from quotameter.demo.scenario import (
    ACME,
    ACME_CREDIT,
    ACME_CREDIT_AFTER,
    ACME_CREDIT_DAY,
    ACME_CREDIT_ID,
    ACME_SHARE,
    ACME_TEAM_LISTED,
    AFTER_WORK,
    APART,
    ATTEMPTS,
    BRIGHTLINE,
    BRIGHTLINE_HIRE,
    BRIGHTLINE_HIRE_BEFORE,
    BRIGHTLINE_HIRE_PART,
    BRIGHTLINE_SHARE,
    CALL_MINUTES,
    CALL_ON_MINUTES,
    CALLCO_AGENTS,
    CALLERS,
    CALLS_A_WEEKDAY,
    CALLS_A_WEEKEND_DAY,
    CALLS_ON,
    CONNECTOR_SOURCE,
    DAY_SPREAD,
    DOCS_DAY_SPREAD,
    DOCS_GROWTH,
    DOCS_PAST,
    DOCS_WEEKEND,
    DOCUMENTS,
    DURATIONS,
    EARLY_HOURS,
    EVENING,
    EXTRA_CUSTOMERS,
    FRIDAY,
    HEARTBEAT,
    HOURLY,
    KESTREL,
    KESTREL_CAP,
    KESTREL_MORNING,
    KESTREL_REACHED,
    KESTREL_SHARE,
    KESTREL_TOPUP_BEFORE,
    KESTREL_TOPUP_BLOCKS,
    KESTREL_TOPUP_ID,
    KESTREL_WARNED,
    LATE_JOIN_S,
    LEAVE_S,
    LONGEST_STEP_BACK,
    MAX_SOLO,
    MEDIA_SOURCE,
    MEETING_ON_MINUTES,
    MEETING_ON_PEOPLE,
    NORTHWIND,
    NORTHWIND_SPENT_AT,
    ORBIT,
    ORBIT_MINUTES,
    PROJECTS,
    QUARTER,
    ROOMS,
    SESSION_SOURCE,
    SHOWN,
    SIZES,
    STORY_DAYS,
    STUDIO_CHANGES_A_DAY,
    STUDIO_OPENING,
    STUDIO_PEAK,
    STUDIO_RISING,
    VOLUME_SOURCE,
    WORKING_DAYS_WANTED,
    WORKING_HOURS,
)
from quotameter.meters.spans import US, Span, usage_us
from quotameter.periods import Period, period_containing
from quotameter.timeutil import from_us, to_us

MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def _us(span: timedelta) -> int:
    """A scenario's duration in microseconds, the unit of the month's instants."""
    return span // timedelta(microseconds=1)


AFTER_WORK_US = _us(AFTER_WORK)
APART_US = _us(APART)
HEARTBEAT_US = _us(HEARTBEAT)


def demo_catalog() -> dict[str, Any]:
    """The catalog of the four reference policies, with the demo's extra organizations."""
    doc = load_yaml(files("quotameter.demo").joinpath("catalog.yaml").read_text())
    assert isinstance(doc, dict)
    doc["customers"].update({key: dict(spec) for key, spec in EXTRA_CUSTOMERS.items()})
    return doc


# --- the demo's clock ---------------------------------------------------------------------


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
        customer, append = self.customer, self.events.append
        for n, (t_us, data) in enumerate(items, self._count + 1):
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
        self._count += len(items)

    def windows(self) -> list[tuple[int, int]]:
        """Working hours (Monday to Friday, 09:00 to 18:00 local time) begun by now; the last
        may run past it. Early in a month, with fewer than three such days, every day from
        07:00 to 22:00."""
        found = _local_windows(
            self.zone, self.period_lo, self.now_us, WORKING_HOURS, weekdays_only=True
        )
        if len(found) >= WORKING_DAYS_WANTED:
            return found
        return _local_windows(
            self.zone, self.period_lo, self.now_us, EARLY_HOURS, weekdays_only=False
        )

    def goals(self, windows: list[tuple[int, int]], total: int) -> list[int]:
        """Running totals at the end of each window, reaching `total` at the last: busier and
        quieter days, lighter Fridays, today only as far as it went."""
        weights = []
        for lo, hi in windows:
            w = self.rng.uniform(*DAY_SPREAD)
            if from_us(lo).astimezone(self.zone).weekday() == 4:
                w *= FRIDAY
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
    for k, (window, goal) in enumerate(zip(windows, story.goals(windows, total), strict=False)):
        if ongoing and k == len(windows) - 1:
            meetings.ongoing(story.rng.randint(*MEETING_ON_MINUTES), MEETING_ON_PEOPLE)
        meetings.fill(window, goal)
        story.day_over(window[1] + AFTER_WORK_US)


def _acme(story: _Story) -> None:
    """Near its limit (about 90 %), after an operator's credit early in the month; a meeting
    is on at now. The catalog names only its admin: the team is listed as members on the
    first morning."""
    windows = story.windows()
    if windows:
        at = max(story.period_lo, windows[0][0] - _us(ACME_TEAM_LISTED))
        story.operations.append(CustomerChange("acme", at, members=tuple(ACME[:-1])))
    credit = ACME_CREDIT
    day = ACME_CREDIT_DAY
    at = windows[day][0] + _us(ACME_CREDIT_AFTER) if len(windows) > day else story.now_us + 1
    if at <= story.now_us:
        story.operations.append(
            GrantChange("acme", "media", ACME_CREDIT_ID, "credit", at, amount=credit)
        )
    else:
        credit = Decimal(0)
    limit = _limit(story, story.spec.seats) + int(credit)
    _media(story, ACME, round(limit * ACME_SHARE), ongoing=True)


def _brightline(story: _Story) -> None:
    """Comfortably under (about 40 %); a new hire took a sixth seat a third into the month."""
    windows = story.windows()
    meetings = _Meetings(story, BRIGHTLINE)
    seats = story.spec.seats
    hire_at = len(windows) // BRIGHTLINE_HIRE_PART
    if len(windows) > 1:
        seats += 1
    goals = story.goals(windows, round(_limit(story, seats) * BRIGHTLINE_SHARE))
    for k, (window, goal) in enumerate(zip(windows, goals, strict=False)):
        if k == hire_at and seats > story.spec.seats:
            at = max(story.period_lo, window[0] - _us(BRIGHTLINE_HIRE_BEFORE))
            story.operations.append(CustomerChange("brightline", at, seats=seats))
            meetings.hire(BRIGHTLINE_HIRE, at)
        meetings.fill(window, goal)
        story.day_over(window[1] + AFTER_WORK_US)


def _northwind(story: _Story) -> None:
    """Used exactly its allowance three quarters into the month: blocked since, no more media."""
    limit = _limit(story, story.spec.seats)
    windows = story.windows()
    goals = [min(limit, g) for g in story.goals(windows, round(limit / NORTHWIND_SPENT_AT))]
    meetings = _Meetings(story, NORTHWIND)
    for window, goal in zip(windows, goals, strict=False):
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
    total = round((base + int(block.block_size)) * KESTREL_SHARE)
    # The top-up's morning: after one working day at least, and on one begun by now.
    morning = max(1, min(len(windows) - 1, round(len(windows) * KESTREL_MORNING)))
    reached = base * KESTREL_REACHED // 100
    goals = story.goals(windows[:morning], reached)
    goals += [reached + g for g in story.goals(windows[morning:], total - reached)]
    meetings = _Meetings(story, KESTREL)
    cap = base * KESTREL_CAP // 100  # short of the block until the top-up
    topped_up = False
    for window, goal in zip(windows, goals, strict=False):
        if not topped_up and meetings.used >= base * KESTREL_WARNED // 100:
            at = window[0] - _us(KESTREL_TOPUP_BEFORE)
            story.operations.append(
                GrantChange(
                    "kestrel",
                    "media",
                    KESTREL_TOPUP_ID,
                    "topup",
                    at,
                    blocks=KESTREL_TOPUP_BLOCKS,
                )
            )
            topped_up = True
        meetings.fill(window, goal if topped_up else min(goal, cap))
        story.day_over(window[1] + AFTER_WORK_US)


def _orbit(story: _Story) -> None:
    """The unlimited plan: heavy use, never blocked."""
    _media(story, ORBIT, story.rng.randint(*ORBIT_MINUTES), ongoing=True)


# --- managed media volume (a gauge) -------------------------------------------------------


def _studio(story: _Story) -> None:
    """A workspace's volume: carried into the cycle, rising with new footage to a peak of
    30.25 hours (25 included: in overage), then archived down a little."""
    rng = story.rng
    story.every_evening()
    opening, peak = STUDIO_OPENING, STUDIO_PEAK
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
        for _ in range(rng.randint(*STUDIO_CHANGES_A_DAY))
    )
    if len(instants) < 2:
        return
    rise = int((peak - opening) / QUARTER)  # in quarter hours
    n_up = max(1, min(rise, round(len(instants) * STUDIO_RISING)))
    cuts = sorted(rng.sample(range(1, rise), n_up - 1)) if n_up > 1 else []
    ups = [b - a for a, b in zip([0, *cuts], [*cuts, rise], strict=False)]
    level = opening
    for t, quarters in zip(instants, ups, strict=False):
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
        growth = 1 + DOCS_GROWTH * len(days)
        busy = 1.0 if day.weekday() < 5 else DOCS_WEEKEND
        done = sum(HOURLY[h] * min(HOUR, story.now_us - lo - h * HOUR) / HOUR for h in hours) / sum(
            HOURLY
        )
        days.append((lo, hours))
        weights.append(growth * busy * done * rng.uniform(*DOCS_DAY_SPREAD))
        day += timedelta(days=1)
    allowance = story.catalog.plans[story.spec.plan].entitlements["sessions"].allowance
    assert allowance is not None and allowance.fixed is not None
    passed = int(allowance.fixed) + rng.randint(*DOCS_PAST)  # by the end of the day it ran out
    before = sum(weights[:-1])
    total = round(passed * sum(weights) / before) if len(days) > 7 and before else passed
    running = _running(weights, total)
    previous = serial = 0
    random_ = rng.random  # rng.randint is ten times slower, and this runs per session
    for (lo, hours), upto in zip(days, running, strict=False):
        n, previous = upto - previous, upto
        if not hours or n <= 0:
            continue
        picked = rng.choices(hours, weights=[HOURLY[h] for h in hours], k=n)
        instants = sorted(
            lo + h * HOUR + int(random_() * (min(HOUR, story.now_us - lo - h * HOUR) // US)) * US
            for h in picked
        )
        sessions = []
        for number, t in enumerate(instants, serial + 1):
            sessions.append(
                (
                    t,
                    {
                        "session": f"ses_{number:06d}",
                        "document": f"doc-{1 + int(random_() * DOCUMENTS):04d}",
                    },
                )
            )
        serial += len(instants)
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
        for _ in range(
            rng.randint(*CALLS_A_WEEKDAY)
            if day.weekday() < 5
            else rng.randint(*CALLS_A_WEEKEND_DAY)
        ):
            hour = rng.choices(range(24), weights=HOURLY)[0]
            start = lo + hour * HOUR + rng.randrange(HOUR // US) * US
            if story.period_lo <= start < story.now_us:
                calls += 1
                _call(story, calls, start, rng.choice(CALL_MINUTES))
        day += timedelta(days=1)
    for minutes_ago in CALLS_ON:  # still on
        start = story.now_us - minutes_ago * MINUTE
        if start >= story.period_lo:
            calls += 1
            _call(story, calls, start, CALL_ON_MINUTES)


def _call(story: _Story, number: int, start: int, minutes: int) -> None:
    rng = story.rng
    call = f"call-{number:05d}"
    end = start + minutes * MINUTE
    agent = rng.choice(CALLCO_AGENTS)
    people = [agent] + [f"caller-{rng.randint(1000, 9999)}" for _ in range(rng.choice(CALLERS))]
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
