"""JSON text as quotameter writes it: Decimals as exact numbers, instants in RFC 3339."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from quotameter.timeutil import rfc3339


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # An exact number in the JSON text, never squeezed through a float.
        return orjson.Fragment(format(value, "f").encode())
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot render {type(value).__name__}")


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
