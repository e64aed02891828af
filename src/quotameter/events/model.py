"""CloudEvents 1.0 as quotameter takes them: the envelope, checked field by field."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from quotameter.errors import shown
from quotameter.timeutil import COMMON_RFC3339, EPOCH, LATEST, NO_OFFSET, from_us, rfc3339_us, to_us

_NO_CONTROL = r"^[^\x00-\x1f]+$"


class EventRejected(ValueError):
    """An event that cannot be counted; the message names the field and the reason."""


class CloudEvent(BaseModel):
    # Unknown attributes are CloudEvents extensions: kept in the raw event, never an error.
    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=512, pattern=_NO_CONTROL)
    source: str = Field(min_length=1, max_length=512, pattern=_NO_CONTROL)
    type: str = Field(min_length=1, max_length=256, pattern=_NO_CONTROL)
    subject: str = Field(min_length=1, max_length=256)
    time: AwareDatetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", "source", mode="before")
    @classmethod
    def _number_is_text(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339_only(cls, v: object) -> object:
        # Pydantic alone would also take a bare number as Unix seconds, and ISO 8601 forms
        # that RFC 3339 does not have (week dates, the basic format, an hour alone).
        if v is None or isinstance(v, datetime):
            return v
        if not isinstance(v, str):
            raise PydanticCustomError("rfc3339", "must be an RFC 3339 timestamp string")
        try:
            return from_us(instant_us(v, "time"))
        except EventRejected as err:
            raise PydanticCustomError(
                "rfc3339", "{reason}", {"reason": str(err).split(": ", 1)[1]}
            ) from None


_event = TypeAdapter(CloudEvent)


def describe(err: ValidationError) -> str:
    """Pydantic's first error as 'field: reason'."""
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"]) or "event"
    msg = first["msg"]
    if first["type"] == "missing":
        msg = "required"
    elif first["type"] == "timezone_aware":
        msg = "must carry a UTC offset (e.g. 2026-01-01T10:00:00Z)"
    elif first["type"] == "dict_type":
        msg = "must be a JSON object"
    elif first["type"] == "string_pattern_mismatch" and first["ctx"]["pattern"] == _NO_CONTROL:
        msg = "must not contain control characters (U+0000 to U+001F)"
    return f"{loc}: {msg}"


class Envelope:
    """The attributes of an accepted event that quotameter uses."""

    __slots__ = ("data", "id", "source", "subject", "time", "type")

    def __init__(
        self,
        id: str,
        source: str,
        type: str,
        subject: str,
        time: datetime | None,
        data: dict[str, Any],
    ) -> None:
        self.id, self.source, self.type, self.subject, self.time, self.data = (
            id,
            source,
            type,
            subject,
            time,
            data,
        )


_CONTROL = re.compile(r"[\x00-\x1f]")
_EPOCH = EPOCH
_ONE_US = timedelta(microseconds=1)
_LATEST_US = to_us(LATEST)
_common_rfc3339 = COMMON_RFC3339.fullmatch
_fromisoformat = datetime.fromisoformat

# (id, source, type, subject, time in µs since the epoch or None, data)
Fields = tuple[str, str, str, str, "int | None", dict[str, Any]]


def _plain(text: str) -> bool:
    # Most ids are printable ASCII: two cheap string checks decide; the regex only when not.
    return (text.isascii() and text.isprintable()) or not _CONTROL.search(text)


def plain_fields(obj: Any) -> Fields | None:
    """The fields of a plain, well-formed event, or None when it needs the full check.

    This runs for every event of every batch, so it builds nothing it does not return and
    never raises: anything unusual (a missing field, a number for an id, a time without
    offset or before 1970) goes to `parse_event`, which accepts it or says what is wrong.
    """
    if type(obj) is not dict:
        return None
    get = obj.get
    id_, source, type_, subject, data, time = (
        get("id"),
        get("source"),
        get("type"),
        get("subject"),
        get("data", _NO_DATA),
        get("time"),
    )
    if not (
        type(id_) is str
        and type(source) is str
        and type(type_) is str
        and type(subject) is str
        and 0 < len(id_) <= 512
        and 0 < len(source) <= 512
        and 0 < len(type_) <= 256
        and 0 < len(subject) <= 256
        and (type(data) is dict or data is _NO_DATA)
        and get("specversion", "1.0") == "1.0"
        and _plain(id_)
        and _plain(source)
        and _plain(type_)
    ):
        return None
    if data is _NO_DATA:
        data = {}
    if time is None:
        return id_, source, type_, subject, None, data
    # The common RFC 3339 form, read inline; any other (lower case, leap second, more than six
    # fraction digits, or not RFC 3339 at all) goes to the full check.
    if type(time) is not str or _common_rfc3339(time) is None:
        return None
    try:
        us = (_fromisoformat(time) - _EPOCH) // _ONE_US
    except ValueError:  # no such day
        return None
    return (id_, source, type_, subject, us, data) if 0 <= us < _LATEST_US else None


def fields_of(obj: Any) -> Fields:
    """The fields of any event; EventRejected naming the field and the reason."""
    fields = plain_fields(obj)
    if fields is not None:
        return fields
    ev = _checked(obj)
    t = checked_us(ev.time, "time") if ev.time is not None else None
    return ev.id, ev.source, ev.type, ev.subject, t, ev.data


def parse_event(obj: Any) -> Envelope:
    """Check one event: accepted as an Envelope, or EventRejected naming the field and why."""
    fields = plain_fields(obj)
    if fields is None:
        return _checked(obj)
    id_, source, type_, subject, t, data = fields
    return Envelope(id_, source, type_, subject, None if t is None else _EPOCH + t * _ONE_US, data)


_NO_DATA: Any = object()


def _checked(obj: Any) -> Envelope:
    if not isinstance(obj, dict):
        raise EventRejected("event: must be a JSON object")
    try:
        ev = _event.validate_python(obj)
    except ValidationError as err:
        raise EventRejected(describe(err)) from None
    return Envelope(ev.id, ev.source, ev.type, ev.subject, ev.time, ev.data)


def parse_instant(value: Any, field: str) -> int:
    if not isinstance(value, str):
        raise EventRejected(f"{field}: required, an RFC 3339 timestamp")
    return instant_us(value, field)


def instant_us(text: str, field: str) -> int:
    """An RFC 3339 timestamp in microseconds since the epoch; EventRejected saying why not."""
    try:
        us = rfc3339_us(text)
    except ValueError as err:
        reason = str(err)
        raise EventRejected(
            f"{field}: {reason}" if reason == NO_OFFSET else f"{field}: {reason} ({shown(text)})"
        ) from None
    return _in_range(us, field, text)


def checked_us(at: datetime, field: str) -> int:
    return _in_range(to_us(at), field, at.isoformat())


def _in_range(us: int, field: str, written: str) -> int:
    # Past 9999-01-01 a period or a time zone around the instant could not be computed.
    if not 0 <= us < _LATEST_US:
        raise EventRejected(
            f"{field}: must be on or after {EPOCH.date()} and before {LATEST.date()} "
            f"(got {shown(written)})"
        )
    return us


# How deep `data` may nest, counting data itself as level 1: as deep as orjson writes JSON
# back (it stops at 255 levels of objects and arrays), while the request body may nest 1,024
# levels. The check costs nothing on the hot path: writing data fails first.
MAX_DATA_DEPTH = 254


def data_unwritable(data: Any, err: Exception) -> str:
    """Why an event's data cannot be stored as JSON, as 'field: reason'."""
    depth = _depth(data)
    if depth > MAX_DATA_DEPTH:
        return (
            f"data: nested {depth} levels deep, at most {MAX_DATA_DEPTH} "
            "(objects and arrays, data itself the first)"
        )
    return f"data: cannot be written as JSON ({err})"


def _depth(value: Any) -> int:
    """Levels of objects and arrays, without recursion (Python's own stack would not do)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
