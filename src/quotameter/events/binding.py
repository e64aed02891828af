"""The CloudEvents HTTP protocol binding: the events one request to `POST /v1/events` carries.

Content modes (CloudEvents HTTP Protocol Binding 1.0, section 3):
- structured: `Content-Type: application/cloudevents+json`, the body is one event;
- batched: `application/cloudevents-batch+json`, the body is an array of events;
- binary: a `ce-specversion` header and any other Content-Type; the attributes are the `ce-`
  headers (percent-decoded), `Content-Type` is the `datacontenttype`, the body is `data`.
Plain `application/json` is one event or an array, as in structured and batched mode; a
request without Content-Type is read as JSON too (simple clients send none).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from quotameter.errors import BadRequest, UnsupportedMediaType, shown

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
EVENT_TYPES = (JSON, STRUCTURED, BATCH)
ACCEPTED = (
    f"{JSON}, {STRUCTURED} or {BATCH} (UTF-8), or CloudEvents binary mode: ce-* headers "
    f"with JSON data ({JSON} or an application/*+json type)"
)

_ATTRIBUTE = re.compile(r"[a-z0-9]{1,64}")
# In binary mode these come from the request itself, never from a ce- header.
_NOT_HEADERS = frozenset({"data", "data_base64", "datacontenttype"})


def events_of(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> list[Any]:
    """The events of a request (ASGI headers: lower-case names, raw values): each one still
    to be checked on its own. UnsupportedMediaType (415) or BadRequest (400) for the request."""
    content_type = _header(headers, b"content-type")
    media = _media_type(content_type) if content_type is not None else None
    if media not in (STRUCTURED, BATCH) and _header(headers, b"ce-specversion") is not None:
        return [_binary_event(headers, body, content_type, media)]
    if media is not None and media not in EVENT_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type: {shown(content_type)} is not accepted; send {ACCEPTED}"
        )
    payload = _json(body)
    return payload if isinstance(payload, list) else [payload]


def _binary_event(
    headers: Sequence[tuple[bytes, bytes]], body: bytes, content_type: str | None, media: str | None
) -> dict[str, Any]:
    if media is not None and not is_json(media):
        raise UnsupportedMediaType(
            f"Content-Type: {shown(content_type)} is not accepted as the data of a binary-mode "
            "event; "
            f"the data must be JSON ({JSON} or an application/*+json type)"
        )
    event: dict[str, Any] = {}
    for name, raw in headers:
        if not name.startswith(b"ce-"):
            continue
        header = name.decode("latin-1")
        attribute = header[3:]
        if not _ATTRIBUTE.fullmatch(attribute) or attribute in _NOT_HEADERS:
            raise BadRequest(
                f"{header}: not a CloudEvents attribute header (ce- and 1 to 64 lower-case "
                f"letters and digits, not {', '.join(sorted(_NOT_HEADERS))})"
            )
        if attribute in event:
            raise BadRequest(f"{header}: given more than once")
        try:
            # Section 3.1.3.2: values are percent-encoded UTF-8.
            event[attribute] = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{header}: not percent-encoded UTF-8 ({shown(raw)})") from None
    if content_type is not None:
        event["datacontenttype"] = content_type
    if body.strip():
        event["data"] = _json(body)
    return event


def is_json(media: str) -> bool:
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _media_type(content_type: str) -> str:
    """The media type, lower case; UnsupportedMediaType for a charset other than UTF-8
    (JSON is UTF-8: RFC 8259, section 8.1)."""
    media, _, parameters = content_type.partition(";")
    for parameter in parameters.split(";"):
        key, _, value = parameter.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedMediaType(
                f"Content-Type: {shown(content_type)} is not accepted: JSON is UTF-8"
            )
    return media.strip().lower()


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"body: not valid JSON ({err})") from None
