"""How Nightscout reads values: times (moment, `Date`), JavaScript numbers and strings, ids.

Nightscout is JavaScript over MongoDB, so a time may be epoch ms, seconds, an ISO 8601 or
RFC 2822 string; `Number(x)` and `String(x)` follow JavaScript's rules; `_id` is a 24-hex
ObjectId and v3's `identifier` a uuid v5. These pure functions give the store, the v1
query language and the v3 endpoints one shared reading of such values.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Final, TypeGuard

from cascade_dev.fake_nightscout.schema import INDEX_FIELDS, MIN_TIMESTAMP

_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$")
_JS_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_CANONICAL_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_UUID_NAMESPACE: Final = uuid.UUID(bytes=b"NightscoutRocks!")
"""`lib/api3/shared/operationTools.js`: the uuid v5 namespace of v3 identifiers."""

Clock = Callable[[], int]
"""A source of server time in epoch milliseconds."""


def wall_clock_ms() -> int:
    """The default store clock: the machine's wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def is_object_id(value: object) -> bool:
    """A 24-hex string, what MongoDB's ObjectId accepts (`OBJECT_ID_HEX_RE` in Nightscout)."""
    return isinstance(value, str) and _HEX24.match(value) is not None


def is_uuid(value: object) -> bool:
    """`UUID_RE` of `lib/server/query.js`."""
    return isinstance(value, str) and _UUID.match(value) is not None


# --------------------------------------------------------------------------- time parsing


@lru_cache(maxsize=65_536)
def parse_iso_ms(value: str) -> int | None:
    """Epoch ms of an ISO 8601 (or RFC 2822) string, or None when it is not a time.

    A string without an offset is read as UTC, as a Nightscout server running in UTC would.
    Cached because queries repeat the same bounds.
    """
    parsed = _parse_moment(value)
    return None if parsed is None else _to_ms(parsed)


def _parse_moment(value: str) -> datetime | None:
    """moment.parseZone: a datetime keeping the written offset (UTC when none is written)."""
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _to_ms(moment: datetime) -> int | None:
    try:
        return math.floor(moment.timestamp() * 1000 + 0.5)
    except (OverflowError, OSError, ValueError):
        return None


def iso_ms(ms: int) -> str:
    """JavaScript's `Date#toISOString` / moment's `toISOString()`: UTC, milliseconds, `Z`."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def is_canonical_iso(value: object) -> bool:
    """Whether a string is in `toISOString()` form, where string order is time order."""
    return isinstance(value, str) and _CANONICAL_ISO.match(value) is not None


def parse_zone(value: str) -> tuple[int, int] | None:
    """moment.parseZone(value): (epoch ms, utcOffset in minutes), or None when invalid."""
    parsed = _parse_moment(value)
    if parsed is None:
        return None
    ms = _to_ms(parsed)
    offset = parsed.utcoffset()
    if ms is None or offset is None:
        return None
    return ms, int(offset.total_seconds() // 60)


def is_number(value: object) -> TypeGuard[int | float]:
    """True for JSON numbers (bool is not a number in JSON or BSON)."""
    kind = type(value)
    if kind is int or kind is float:
        return True
    return isinstance(value, int | float) and kind is not bool


def number_in_string(text: str) -> float | int | None:
    """`isNumberInString` of `lib/api3/shared/stringTools.js` (parseFloat'ed), else None."""
    if not _JS_NUMBER.match(text.strip()):
        return None
    number = float(text)
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def parse_to_moment(value: Any) -> tuple[int, int] | None:
    """`lib/api3/shared/dateTools.js` parseToMoment: (epoch ms, utcOffset minutes) or None.

    Falsy values are no time; a list gives its first time; numbers too small to be ms since
    2000 are read as seconds; ISO 8601 or RFC 2822 strings keep their offset; a result
    before 2000-01-01 is no time, which is why `history/0` is a 400.
    """
    if value is None or value is False or (isinstance(value, str) and not value):
        return None
    if is_number(value) and (value == 0 or math.isnan(value)):
        return None
    if isinstance(value, list | tuple):
        for item in value:
            found = parse_to_moment(item)
            if found is not None:
                return found
        return None
    if isinstance(value, str):
        number = number_in_string(value)
        if number is None:
            zoned = parse_zone(value)
            return zoned if zoned is not None and zoned[0] >= MIN_TIMESTAMP else None
        value = number
    if not is_number(value) or not math.isfinite(value):
        return None
    ms = math.trunc(value)
    if ms < MIN_TIMESTAMP:
        ms = math.trunc(value * 1000)
    return (ms, 0) if ms >= MIN_TIMESTAMP else None


def parse_to_moment_ms(value: Any) -> int | None:
    """Epoch ms of `parse_to_moment`, or None."""
    found = parse_to_moment(value)
    return None if found is None else found[0]


def time_value_ms(value: object) -> int | None:
    """Epoch ms of a stored time field: a number of ms, a numeric string, or an ISO string."""
    if isinstance(value, str):
        try:  # the common case, uncached: stored times are nearly all distinct
            parsed = datetime.fromisoformat(value)
        except ValueError:
            if _NUMBER.match(value):
                number = float(value)
                return int(number) if math.isfinite(number) else None
            return parse_iso_ms(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    if is_number(value):
        number = float(value)
        return int(number) if math.isfinite(number) else None
    return None


def _event_time(collection: str, doc: Mapping[str, Any]) -> tuple[int | None, bool]:
    """When the event happened, and whether that value *is* the indexed field's value.

    The second item tells filters on the indexed field (entries' numeric `date`, others'
    parseable `created_at`/`startDate`) that they can compare the index key instead of
    parsing the document. None means no usable time: the document is still kept and served.
    """
    index_field, as_time = INDEX_FIELDS.get(collection, ("created_at", True))
    value: Any = doc.get(index_field)
    if not as_time:
        if is_number(value) and math.isfinite(value) and float(value).is_integer():
            return int(value), True
        return time_value_ms(value) or time_value_ms(doc.get("dateString")), False
    parsed = time_value_ms(value)
    if parsed is not None:
        return parsed, True
    fallback = "created_at" if index_field == "startDate" else "date"
    return time_value_ms(doc.get(fallback)), False


def event_time_ms(collection: str, doc: Mapping[str, Any]) -> int | None:
    """When the event a document records happened, by that collection's time field."""
    return _event_time(collection, doc)[0]


def http_date(ms: int) -> str:
    """An HTTP date (RFC 7231) for a server time, as Express writes `Last-Modified`."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def js_number(value: Any) -> float | int | None:
    """JavaScript's `Number(value)`; None stands for NaN (what JSON.stringify writes as null)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if is_number(value):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        if _JS_NUMBER.match(text):
            number = float(text)
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        return None
    if isinstance(value, list):
        return js_number(value[0] if len(value) == 1 else "x" if value else "")
    return None


def js_string(value: Any) -> str:
    """JavaScript's `String(value)` for the JSON values a document holds."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, str):
        return value
    return str(value)


def v3_identifier(doc: Mapping[str, Any]) -> str:
    """`calculateIdentifier` of `lib/api3/shared/operationTools.js`: uuid v5 of device, date
    (and eventType), so the same event uploaded twice gets the same identifier."""
    device = "undefined" if "device" not in doc else js_string(doc["device"])
    date = "undefined" if "date" not in doc else js_string(doc["date"])
    key = f"{device}_{date}"
    if doc.get("eventType"):
        key += "_" + js_string(doc["eventType"])
    return str(uuid.uuid5(_UUID_NAMESPACE, key))
