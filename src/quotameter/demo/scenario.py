"""The demo's story as data: who the organizations are, who works there, what each does in
the month and how much of its allowance that comes to, the operators' changes (a new seat,
a credit, a top-up), and the shape of the traffic each product sends.

Nothing here reads or writes anything: `quotameter.demo.month` turns these values into a
month of events and operations, and `quotameter.demo.load` puts them through the services.

The organizations (the first four are the catalog's own, in `catalog.yaml`):

- acme (basic, 10 seats + a guest, UTC): near its limit, a meeting still on at `now`;
- studio (pro): managed-media volume that peaked past the 25 included hours;
- docs (sessions_100k, auto_upgrade): past 100,000 sessions, so moved to sessions_200k;
- callco (connector): participant streams of calls around the clock, some still open;
- brightline (basic, Berlin): comfortably under, a sixth seat added during the month;
- northwind (basic, New York): used exactly its allowance, so blocked;
- kestrel (basic, Tokyo): reached 95 %, then bought a 1,000-minute block;
- orbit (unlimited, Lisbon): heavy use, never blocked.
"""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from typing import Any

# --- who sends what -----------------------------------------------------------------------

MEDIA_SOURCE = "rooms.example/media"
CONNECTOR_SOURCE = "rooms.example/audio-connector"
VOLUME_SOURCE = "vault.example/workspaces"
SESSION_SOURCE = "collab.example/docs"


# --- the organizations and their people ---------------------------------------------------


def _people(domain: str, *names: str) -> list[str]:
    return [f"{name}@{domain}" for name in names]


ACME = [
    *_people(
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
    ),
    "kim@partner.example",  # a guest: guests count like members
]
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

# The organizations the demo adds to the catalog's own, as catalog entries.
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


# --- the month's calendar -----------------------------------------------------------------

STORY_DAYS = 3  # how long every organization's current period must have run for its story
LONGEST_STEP_BACK = 31  # days: past that the catalog has a period the rule cannot satisfy

WORKING_HOURS = (9, 18)  # local time, Monday to Friday
WORKING_DAYS_WANTED = 3  # with fewer begun by now, every day counts, over EARLY_HOURS
EARLY_HOURS = (7, 22)
# When a media organization's working day is over (its meetings end by then), and the
# local time at which round-the-clock organizations are evaluated.
AFTER_WORK = timedelta(minutes=30)
EVENING = time(23, 30)
DAY_SPREAD = (0.75, 1.25)  # a working day's weight: busier and quieter days
FRIDAY = 0.7  # Fridays are lighter


# --- media meetings -----------------------------------------------------------------------

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
APART = timedelta(minutes=5)  # a user's meetings are at least this far apart: never merged
HEARTBEAT = timedelta(minutes=5)
MAX_SOLO = 45  # minutes: the longest one-person recording that closes a day
ATTEMPTS = 80  # meetings that may fail to fit before a day is left short


# --- acme: near its limit, a meeting on at now ----------------------------------------------

ACME_TEAM_LISTED = timedelta(minutes=30)  # before the first working day: members listed
ACME_CREDIT_ID = "demo-acme-outage-credit"
ACME_CREDIT = Decimal(250)  # minutes, granted by an operator after an outage
ACME_CREDIT_DAY = 1  # the second working day...
ACME_CREDIT_AFTER = timedelta(hours=1, minutes=12)  # ...this long after it began
ACME_SHARE = 0.905  # of the limit (credit included) used by now
MEETING_ON_MINUTES = (20, 45)  # acme's and orbit's meeting on at now began this long ago
MEETING_ON_PEOPLE = 3


# --- brightline: comfortably under, a sixth seat --------------------------------------------

BRIGHTLINE_SHARE = 0.40  # of the limit (six seats) used by now
BRIGHTLINE_HIRE_PART = 3  # the hire comes a third into the working days
BRIGHTLINE_HIRE_BEFORE = timedelta(hours=1)  # 08:00, before the day's first meeting


# --- northwind: blocked -----------------------------------------------------------------------

NORTHWIND_SPENT_AT = 0.75  # the part of the month by which its allowance is used up


# --- kestrel: 95 %, then a top-up block -------------------------------------------------------

KESTREL_WARNED = 95  # % of the base limit: the e-mail that prompts the top-up
KESTREL_REACHED = 96  # % of the base limit used before the top-up's morning
KESTREL_CAP = 97  # % of the base limit never passed before the top-up
KESTREL_MORNING = 2 / 3  # the part of the working days after which the top-up comes
KESTREL_TOPUP_ID = "demo-kestrel-topup-1"
KESTREL_TOPUP_BLOCKS = 1
KESTREL_TOPUP_BEFORE = timedelta(minutes=15)  # 08:45, the morning after the 95 % e-mail
KESTREL_SHARE = 0.82  # of the raised limit used by now


# --- orbit: unlimited -------------------------------------------------------------------------

ORBIT_MINUTES = (7200, 8400)  # media minutes used by now, drawn in this range


# --- studio: managed media volume (a gauge) ---------------------------------------------------

QUARTER = Decimal("0.25")  # hours: footage comes and goes in quarter hours
STUDIO_OPENING = Decimal("17.5")  # hours carried into the cycle
STUDIO_PEAK = Decimal("30.25")  # hours at the peak (25 included: in overage)
STUDIO_CHANGES_A_DAY = (2, 4)
STUDIO_RISING = 0.6  # the part of the changes that take the volume up to its peak
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


# --- docs: co-editing sessions (a count) ------------------------------------------------------

# Sessions by UTC hour: Europe's day, then the Americas'.
HOURLY = [2, 1, 1, 1, 2, 3, 6, 9, 11, 12, 12, 11, 10, 11, 13, 14, 14, 13, 11, 9, 7, 5, 4, 3]
DOCS_GROWTH = 0.02  # busier by this much every day of the month
DOCS_WEEKEND = 0.45  # a weekend day's share of a weekday's sessions
DOCS_DAY_SPREAD = (0.9, 1.1)
DOCS_PAST = (300, 900)  # sessions past the allowance by the end of the day it ran out
DOCUMENTS = 2400


# --- callco: participant streams (duration, never merged) -------------------------------------

CALLS_A_WEEKDAY = (5, 9)
CALLS_A_WEEKEND_DAY = (1, 3)
CALL_MINUTES = [3, 4, 6, 8, 10, 12, 15, 20, 25, 35]
CALLERS = [1, 1, 2, 3]  # callers beside the agent, drawn from this list
CALLS_ON = (4, 11, 23)  # minutes ago: calls begun then and still on at now
CALL_ON_MINUTES = 40
