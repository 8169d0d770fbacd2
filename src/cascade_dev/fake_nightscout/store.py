"""In-memory document store for one fake Nightscout site, shaped like Nightscout 15's MongoDB.

One `SiteStore` is one Nightscout instance (one person). It keeps, per collection, the
documents exactly as MongoDB would hold them (file names below are in nightscout/
cgm-remote-monitor 15.0.7):

- a document uploaded through API v1 (`POST /api/v1/<collection>`, how xDrip+, Loop, AAPS
  and most uploaders write) gets an `_id` and nothing else from the server: no `identifier`,
  `srvCreated`, `srvModified` or `isValid` (`lib/server/entries.js`, `treatments.js`,
  `devicestatus.js`, `profile.js` create nothing of the kind);
- a document created through API v3 gets `identifier`, `srvCreated` and `srvModified`
  (`lib/api3/generic/create/insert.js`; v3 create does *not* set `isValid`);
- a v3 PATCH or DELETE of any document (v1-uploaded ones too) sets `srvModified` (and, for a
  soft delete, `isValid: false`): `lib/api3/generic/patch/operation.js`, `delete/operation.js`.

Which API wrote a document is remembered per document (`StoredDoc.created_by`); the fields
above follow from it. API v3 *presents* a document without those fields with stand-ins
(`lib/api3/storage/mongoCollection/utils.js` normalizeDoc: `identifier` = `_id`, `_id`
dropped; `lib/api3/generic/collection.js` resolveDates: `srvModified` = `srvCreated` = the
event time) but filters on what is stored, so v3 history never sees a v1 upload.

Two sorted indexes let the server answer range queries with `bisect` instead of scanning a
subject-year on every request:

- by event time (`date` for entries, `created_at` for treatments/devicestatus/food,
  `startDate` for profile): what v1 sorts and pages by;
- by stored `srvModified`: what the v3 history feed pages by (documents without one are not
  in it, as they do not match `srvModified > x` in MongoDB).

Each document is kept only as the JSON bytes it is stored as, plus the few values the
indexes and common filters need, and the bytes v1/v3 add when serving it. Serving a
1000-document page is then a byte join; a filter on any other field parses candidates.

Server times: Nightscout stamps `srvModified` with `Date.now()`. The fake keeps them unique
and increasing within a collection (a deliberate simplification: the real server can give
two writes in one millisecond the same value). A document seeded as uploaded through v3
gets its event time plus a small upload delay, so a subject-year looks as if uploaded live.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Final, Literal, TypeGuard

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "food", "settings")
"""Every collection a Nightscout 15 instance serves through API v3."""

Api = Literal["v1", "v3"]
APIS: Final = ("v1", "v3")

MIN_TIMESTAMP: Final = 946_684_800_000
"""2000-01-01 in ms: `lib/api3/const.json` MIN_TIMESTAMP; v3 refuses earlier times."""

SERVER_FIELDS: Final = frozenset({"_id", "identifier", "srvCreated", "srvModified", "isValid"})
"""Fields the server owns; `edit` refuses to change them."""

INDEX_FIELDS: Final = {
    "entries": ("date", False),
    "treatments": ("created_at", True),
    "devicestatus": ("created_at", True),
    "food": ("created_at", True),
    "settings": ("created_at", True),
    "profile": ("startDate", True),
}
"""Per collection, the field the event-time index is keyed on, and whether that field is
compared as a time (ISO strings) rather than as a plain number (entries' epoch-ms `date`)."""

V3_FALLBACK_DATE_FIELDS: Final = {
    "entries": "date",
    "treatments": "created_at",
    "devicestatus": "created_at",
    "profile": "created_at",
    "food": "created_at",
}
"""`lib/api3/generic/setup.js`: the field v3 derives a missing `srvModified` from (resolveDates)
and that `lastModified` also looks at; settings has none."""

V3_DEDUP_FIELDS: Final = {
    "entries": ("date", "type"),
    "treatments": ("created_at", "eventType"),
    "devicestatus": ("created_at", "device"),
    "profile": ("created_at",),
    "food": ("created_at",),
    "settings": (),
}
"""`lib/api3/generic/setup.js` dedupFallbackFields: a v3 create whose values all equal those of
a stored document *without* an `identifier` (a v1 upload) replaces that document."""

_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$")
_JS_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_CANONICAL_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
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


# --------------------------------------------------------------------------- serialisation


def _finite(value: Any) -> Any:
    """Replace NaN/Infinity (invalid JSON) by null, as JavaScript's JSON.stringify does."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, never emitting NaN (a real server never does)."""
    try:
        return _ENCODER.encode(value).encode()
    except (TypeError, ValueError):
        finite = _finite(value)
        text = json.dumps(finite, separators=(",", ":"), ensure_ascii=False, default=str)
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate: JSON carries it only as an escape
            return json.dumps(finite, separators=(",", ":"), default=str).encode()


def _extend(body: bytes, extra: bytes) -> bytes:
    """A JSON object's bytes with more `"key":value` members appended."""
    if not extra:
        return body
    if len(body) <= 2:
        return b"{" + extra + b"}"
    return body[:-1] + b"," + extra + b"}"


_PLAIN = re.compile(r"^[0-9A-Za-z_.:+-]*$")


def _member(key: str, value: Any) -> bytes:
    """`"key":value` for a plain key (the common values without the JSON encoder)."""
    kind = type(value)
    if value is None:
        text = "null"
    elif kind is int:
        text = str(value)
    elif kind is str and _PLAIN.match(value):
        text = f'"{value}"'
    else:
        text = _ENCODER.encode(_finite(value))
    return f'"{key}":{text}'.encode()


def _serving_patch(
    doc: Mapping[str, Any], changes: Sequence[tuple[str, Any]]
) -> tuple[bytes, bytes | None]:
    """How serving `doc` with `changes` assigned (in JavaScript order) differs from its bytes.

    (suffix, None) when every changed key is new (appended members), else (b"", whole body).
    """
    if not changes:
        return b"", None
    if all(key not in doc for key, _ in changes):
        return b",".join(_member(key, value) for key, value in changes), None
    changed = dict(doc)
    for key, value in changes:
        changed[key] = value
    return b"", dumps(changed)


# --------------------------------------------------------------------------- records

_BSON_RANK: Final = {type(None): 1, int: 2, float: 2, str: 3, dict: 4, list: 5, bool: 8}


@dataclass(slots=True, eq=False)
class StoredDoc:
    """One stored document: its stored JSON, what v1/v3 add when serving it, index keys.

    `body` is the document as MongoDB holds it, without `_id`. `identifier` and
    `srv_modified` are the *stored* fields (None when absent, as for every v1 upload): v3
    filters, history and lookups use these. `v3_modified` is what v3 presents as
    `srvModified` (stored, else derived from the event time); None when neither exists.
    """

    seq: int
    oid: str
    identifier: str | None
    body: bytes
    event_ms: int  # 0 when the document has no usable time
    key_exact: bool  # event_ms equals the indexed field's (numeric or parsed) value
    srv_modified: int | None
    is_valid: bool  # stored isValid is not false
    created_by: Api
    v3_modified: int | None = None
    v3_suffix: bytes = b""
    v3_override: bytes | None = None
    v1_suffix: bytes = b""
    v1_override: bytes | None = None
    order_key: tuple[Any, ...] = ()
    sys_time: str | None = None  # entries: the stored `sysTime`, v1's upsert key with `type`

    @property
    def doc(self) -> dict[str, Any]:
        """A fresh dict of the stored document (without `_id`)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def full_doc(self) -> dict[str, Any]:
        """A fresh dict of the stored document with MongoDB's `_id` first."""
        return {"_id": self.oid, **self.doc}

    def v1_json(self) -> bytes:
        """The document as API v1 returns it: with `_id` first."""
        body = self.v1_override if self.v1_override is not None else self.body
        head = b'{"_id":"' + self.oid.encode() + b'"'
        inner = body[1:-1]
        tail = (b"," + inner if inner else b"") + (b"," + self.v1_suffix if self.v1_suffix else b"")
        return head + tail + b"}"

    def v3_json(self) -> bytes:
        """The document as API v3 returns it (normalizeDoc + resolveDates)."""
        if self.v3_override is not None:
            return self.v3_override
        return _extend(self.body, self.v3_suffix)

    def v3_doc(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.v3_json())
        return parsed


def v1_array(records: Sequence[StoredDoc]) -> bytes:
    """A JSON array of documents in v1 form."""
    return b"[" + b",".join(stored.v1_json() for stored in records) + b"]"


@dataclass
class _Collection:
    """Documents of one collection and the two sorted indexes over them."""

    name: str
    by_identifier: dict[str, StoredDoc] = field(default_factory=dict)
    by_oid: dict[str, StoredDoc] = field(default_factory=dict)
    # Event-time index: parallel lists sorted by (event_ms, seq).
    time_keys: list[int] = field(default_factory=list)
    time_docs: list[StoredDoc] = field(default_factory=list)
    # srvModified index (documents that store one): strictly increasing keys.
    mod_keys: list[int] = field(default_factory=list)
    mod_docs: list[StoredDoc] = field(default_factory=list)
    last_modified: int = 0  # greatest srvModified ever handed out (never goes back)
    by_sys_time: dict[str, list[StoredDoc]] = field(default_factory=dict)  # entries only
    # Lazily rebuilt v3 default order; None when stale.
    identifier_order: list[StoredDoc] | None = None

    def add_to_time_index(self, docs: Sequence[StoredDoc]) -> None:
        if not docs:
            return
        if len(docs) > 64:
            merged = sorted(
                [*self.time_docs, *docs], key=lambda stored: (stored.event_ms, stored.seq)
            )
            self.time_docs = merged
            self.time_keys = [stored.event_ms for stored in merged]
            return
        for stored in docs:
            position = bisect_right(self.time_keys, stored.event_ms)
            self.time_keys.insert(position, stored.event_ms)
            self.time_docs.insert(position, stored)

    def remove_from_time_index(self, stored: StoredDoc) -> None:
        position = bisect_left(self.time_keys, stored.event_ms)
        while self.time_docs[position] is not stored:
            position += 1
        del self.time_keys[position]
        del self.time_docs[position]

    def add_to_mod_index(self, stored: StoredDoc) -> None:
        key = stored.srv_modified
        assert key is not None
        if not self.mod_keys or key > self.mod_keys[-1]:
            self.mod_keys.append(key)
            self.mod_docs.append(stored)
        else:
            position = bisect_right(self.mod_keys, key)
            self.mod_keys.insert(position, key)
            self.mod_docs.insert(position, stored)
        self.last_modified = max(self.last_modified, key)

    def remove_from_mod_index(self, stored: StoredDoc) -> None:
        key = stored.srv_modified
        assert key is not None
        position = bisect_left(self.mod_keys, key)
        while self.mod_docs[position] is not stored:
            position += 1
        del self.mod_keys[position]
        del self.mod_docs[position]


# --------------------------------------------------------------------------- queries

_MISSING: Final = object()
_UNPARSEABLE: Final = object()


@dataclass(frozen=True, slots=True)
class ObjectIdValue:
    """A query value MongoDB holds as an ObjectId (`lib/server/query.js` updateIdQuery)."""

    hex: str


@dataclass(frozen=True, slots=True)
class Predicate:
    """One MongoDB-style condition on a (possibly dotted) field.

    Operators: eq ne gt gte lt lte in nin re exists, and `id_or_identifier` (a UUID `_id`
    that v1 looks up as `identifier` too, query.js with UUID_HANDLING). `as_time` compares
    the document's value parsed as a time (epoch ms) with a numeric `value`; otherwise values
    compare as MongoDB does: numbers with numbers, strings with strings, and values of
    different types are never ordered (so `$gt` is false and `$ne` is true).
    """

    path: str
    op: str
    value: Any
    as_time: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A search: conditions (all must hold), order, paging.

    `sort_field=None` is API v3's default order ({identifier, created_at, date}). `only_valid`
    hides soft-deleted documents, as v3 search does; v1 and history pass False.
    """

    predicates: tuple[Predicate, ...] = ()
    sort_field: str | None = None
    descending: bool = False
    skip: int = 0
    limit: int | None = None
    only_valid: bool = True


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or `_MISSING` (MongoDB dotted-field semantics, no arrays)."""
    if "." not in path:
        return doc.get(path, _MISSING)
    current: Any = doc
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _compare(left: Any, right: Any) -> int | None:
    """-1/0/1, or None when MongoDB would not compare the two (different BSON types)."""
    if (is_number(left) and is_number(right)) or (
        isinstance(left, str | bool) and type(left) is type(right)
    ):
        ordered: Any = left
        return int(ordered > right) - int(ordered < right)
    if left is None and right is None:
        return 0
    if isinstance(left, ObjectIdValue) and isinstance(right, ObjectIdValue):
        return int(left.hex > right.hex) - int(left.hex < right.hex)
    if isinstance(left, dict | list) and type(left) is type(right):
        return 0 if left == right else None
    return None


def _equals(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, re.Pattern):
        return _regex(value, wanted)
    if isinstance(value, list) and not isinstance(wanted, list):
        return any(_compare(item, wanted) == 0 for item in value)
    return _compare(value, wanted) == 0


def _regex(value: Any, wanted: re.Pattern[str]) -> bool:
    if isinstance(value, list):
        return any(isinstance(item, str) and wanted.search(item) for item in value)
    return isinstance(value, str) and wanted.search(value) is not None


def _ordered(value: Any, wanted: Any, op: str) -> bool:
    if isinstance(value, list):
        return any(_ordered(item, wanted, op) for item in value)
    order = _compare(value, wanted)
    if order is None:
        return False
    if op == "gt":
        return order > 0
    if op == "gte":
        return order >= 0
    if op == "lt":
        return order < 0
    return order <= 0


def bson_true(value: Any) -> bool:
    """MongoDB's `BSONElement::trueValue`, what `$exists: value` means: only false, 0 and null
    are false; any string (even "false") is true."""
    if value is None or value is False:
        return False
    if is_number(value):
        return bool(value) or (isinstance(value, float) and math.isnan(value))
    return True


def match_value(value: Any, op: str, wanted: Any) -> bool:
    """Whether an already looked-up value (maybe `_MISSING`) satisfies `op wanted`."""
    if op == "exists":
        return (value is not _MISSING) == bson_true(wanted)
    if op == "eq":
        return wanted is None if value is _MISSING else _equals(value, wanted)
    if op == "ne":
        return wanted is not None if value is _MISSING else not _equals(value, wanted)
    if op in ("in", "nin"):
        found = any(
            (value is _MISSING and item is None) or (value is not _MISSING and _equals(value, item))
            for item in wanted
        )
        return found if op == "in" else not found
    if value is _MISSING or value is _UNPARSEABLE:
        return False
    if op == "re":
        return _regex(value, wanted)
    return _ordered(value, wanted, op)


def matches(doc: Mapping[str, Any], predicate: Predicate) -> bool:
    """Whether a document satisfies one condition."""
    value = lookup(doc, predicate.path)
    if predicate.as_time and value is not _MISSING:
        parsed = time_value_ms(value)
        value = _UNPARSEABLE if parsed is None else parsed
    return match_value(value, predicate.op, predicate.value)


def sort_key(value: Any) -> tuple[int, Any]:
    """MongoDB's cross-type sort order (missing/null < numbers < strings < objects ...)."""
    if value is _MISSING:
        return (1, 0)  # MongoDB sorts a missing field as null
    rank = _BSON_RANK.get(type(value), 9)
    if rank in (2, 3, 8):
        return (rank, value)
    if rank == 1:
        return (rank, 0)
    return (rank, json.dumps(value, sort_keys=True, default=str))


def _bounds(
    predicates: Sequence[Predicate], field_name: str, as_time: bool
) -> tuple[int | None, int | None]:
    """Inclusive integer index bounds implied by range conditions on an indexed field.

    Keys are integers, so `> 1.5` is `>= 2` and `< 7` is `<= 6`: a record whose key is
    its field's value (`key_exact`) and lies within the bounds satisfies these conditions.
    """
    low: int | None = None
    high: int | None = None
    for predicate in predicates:
        if predicate.path != field_name or predicate.as_time != as_time:
            continue
        value = predicate.value
        if not is_number(value) or not math.isfinite(value):
            continue
        op = predicate.op
        if op in ("gt", "gte", "eq"):
            bound = math.floor(value) + 1 if op == "gt" else math.ceil(value)
            low = bound if low is None else max(low, bound)
        if op in ("lt", "lte", "eq"):
            bound = math.ceil(value) - 1 if op == "lt" else math.floor(value)
            high = bound if high is None else min(high, bound)
    return low, high


def _covered(predicate: Predicate) -> bool:
    """Whether index bounds enforce this condition exactly (for records with exact keys)."""
    return predicate.op in ("gt", "gte", "lt", "lte", "eq") and is_number(predicate.value)


def _has_range(predicates: Sequence[Predicate], path: str) -> bool:
    return any(p.path == path and _covered(p) and not p.as_time for p in predicates)


class _Filter:
    """Checks a query's conditions against stored records, parsing a document only when a
    condition names a field the record does not carry (server fields and the index key).

    `walked` names the index the candidates come from (bisected by `_bounds`): its range
    conditions already hold for records whose key is exact and are not checked again.
    """

    def __init__(
        self, collection: str, predicates: Sequence[Predicate], walked: str | None = None
    ) -> None:
        index_field, index_as_time = INDEX_FIELDS[collection]
        self.cheap: list[Predicate] = []
        self.indexed: list[Predicate] = []
        self.parsed: list[Predicate] = []
        for predicate in predicates:
            path = predicate.path
            if path == "srvModified" and walked == "srvModified" and _covered(predicate):
                continue  # the srvModified index key is always exact
            if path in ("srvModified", "identifier", "_id") and not predicate.as_time:
                self.cheap.append(predicate)
            elif path == index_field and predicate.as_time == index_as_time:
                # numeric entries `date` (any value: a string never equals a number), or a
                # parsed time compared with a time
                if index_as_time and not is_number(predicate.value):
                    self.parsed.append(predicate)
                else:
                    self.indexed.append(predicate)
            else:
                self.parsed.append(predicate)
        self.indexed_covered = walked == index_field and all(_covered(p) for p in self.indexed)

    def __call__(self, stored: StoredDoc) -> bool:
        for predicate in self.cheap:
            if not _match_cheap(stored, predicate):
                return False
        doc: dict[str, Any] | None = None
        if self.indexed and not (self.indexed_covered and stored.key_exact):
            for predicate in self.indexed:
                if stored.key_exact:
                    if not match_value(stored.event_ms, predicate.op, predicate.value):
                        return False
                    continue
                if doc is None:
                    doc = stored.doc
                if not matches(doc, predicate):
                    return False
        if self.parsed:
            if doc is None:
                doc = stored.doc
            return all(matches(doc, predicate) for predicate in self.parsed)
        return True


def _match_cheap(stored: StoredDoc, predicate: Predicate) -> bool:
    path, op, wanted = predicate.path, predicate.op, predicate.value
    if path == "srvModified":
        value: Any = _MISSING if stored.srv_modified is None else stored.srv_modified
    elif path == "identifier":
        value = _MISSING if stored.identifier is None else stored.identifier
    elif op == "id_or_identifier":  # `_id` given as a UUID: {$or: [{identifier}, {_id}]}
        return bool(stored.identifier == wanted)
    else:  # _id is an ObjectId: it equals only an ObjectId query value, never a string
        value = ObjectIdValue(stored.oid)
    return match_value(value, op, wanted)


# --------------------------------------------------------------------------- the store


class SiteStore:
    """All documents of one Nightscout site, with Nightscout's server-side bookkeeping.

    `uploaded_through` is the API that documents given to `insert`/`load` without an explicit
    `api` were written through: "v3" (the default here, so that tests building stores by hand
    keep server fields) or "v1" (what nearly every real uploader uses; `synthetic_stores`
    defaults to it). Seeded documents are stored as given (they model what sits in MongoDB);
    `v1_create` runs the real v1 upload pipeline instead.

    Thread-safe: the HTTP server reads while tests or admin endpoints write; every method
    takes `lock` (an RLock), and `select` holds it while it walks an index.
    """

    def __init__(
        self,
        site_id: str,
        *,
        clock: Clock | None = None,
        units: str = "mg/dl",
        timezone: str = "UTC",
        upload_delay_ms: tuple[int, int] = (2_000, 60_000),
        uploaded_through: Api = "v3",
    ) -> None:
        if uploaded_through not in APIS:
            raise ValueError(f"uploaded_through must be one of {APIS}, not {uploaded_through!r}")
        self.site_id = site_id
        self.units = units
        self.timezone = timezone
        self.uploaded_through: Api = uploaded_through
        self.lock = threading.RLock()
        self._clock: Clock = clock or wall_clock_ms
        self._last_now = 0
        self._seq = 0
        self._delay_min, self._delay_max = upload_delay_ms
        self._collections: dict[str, _Collection] = {
            name: _Collection(name) for name in COLLECTIONS
        }

    # ---------------------------------------------------------------- time

    def now_ms(self) -> int:
        """Server time: the clock, but never going backwards."""
        with self.lock:
            now = max(self._clock(), self._last_now)
            self._last_now = now
            return now

    def next_srv_modified(self, collection: str) -> int:
        """A new `srvModified` for the collection: now, unique, after every earlier one."""
        with self.lock:
            return max(self.now_ms(), self._collections[collection].last_modified + 1)

    def _upload_delay_ms(self, seq: int) -> int:
        """A deterministic 'time until the uploader reached the server' for seeded data."""
        span = max(1, self._delay_max - self._delay_min)
        return self._delay_min + (seq * 2_654_435_761) % span

    def _ids(self, collection: str, seq: int) -> tuple[str, str]:
        """Deterministic `_id` (24 hex, like an ObjectId) and UUID-shaped `identifier`."""
        digest = hashlib.blake2b(
            f"{self.site_id}/{collection}/{seq}".encode(), digest_size=28
        ).hexdigest()
        variant = "89ab"[int(digest[16], 16) % 4]
        identifier = (
            f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"
        )
        return digest[32:56], identifier

    def _new_oid(self, collection: str) -> tuple[int, str]:
        self._seq += 1
        oid = self._ids(collection, self._seq)[0]
        while oid in self._collections[collection].by_oid:
            self._seq += 1
            oid = self._ids(collection, self._seq)[0]
        return self._seq, oid

    # ---------------------------------------------------------------- records

    def _record(
        self, collection: str, seq: int, oid: str, doc: dict[str, Any], created_by: Api
    ) -> StoredDoc:
        stored = StoredDoc(
            seq=seq,
            oid=oid,
            identifier=None,
            body=b"{}",
            event_ms=0,
            key_exact=False,
            srv_modified=None,
            is_valid=True,
            created_by=created_by,
        )
        self._derive(collection, stored, doc)
        return stored

    def _derive(self, collection: str, stored: StoredDoc, doc: dict[str, Any]) -> None:
        """Set everything a record derives from its stored document."""
        doc.pop("_id", None)
        stored.body = dumps(doc)
        event, exact = _event_time(collection, doc)
        stored.event_ms = event if event is not None else 0
        stored.key_exact = exact
        raw_identifier = doc.get("identifier")
        stored.identifier = (
            js_string(raw_identifier)
            if raw_identifier not in (None, "", 0, False) and not isinstance(raw_identifier, dict)
            else None
        )
        modified = doc.get("srvModified")
        stored.srv_modified = (
            math.trunc(modified) if is_number(modified) and math.isfinite(modified) else None
        )
        stored.is_valid = doc.get("isValid") is not False
        sys_time = doc.get("sysTime") if collection == "entries" else None
        stored.sys_time = sys_time if isinstance(sys_time, str) else None

        # v3's view: normalizeDoc, then resolveDates (lib/api3/storage/mongoCollection/utils.js,
        # lib/api3/generic/collection.js).
        changes: list[tuple[str, Any]] = []
        if not raw_identifier:
            changes.append(("identifier", stored.oid))
        v3_modified: int | None
        if doc.get("srvModified"):
            v3_modified = stored.srv_modified
        else:
            fallback_field = V3_FALLBACK_DATE_FIELDS.get(collection)
            v3_modified = parse_to_moment_ms(doc.get(fallback_field)) if fallback_field else None
            if v3_modified is not None:
                changes.append(("srvModified", v3_modified))
        if v3_modified is not None and not doc.get("srvCreated"):
            changes.append(("srvCreated", v3_modified))
        stored.v3_modified = v3_modified
        stored.v3_suffix, stored.v3_override = _serving_patch(doc, changes)

        # v1's view of treatments: `carbs` and `insulin` pass through Number()
        # (lib/api/treatments/index.js serveTreatments), so a missing one reads as null.
        v1_changes: list[tuple[str, Any]] = []
        if collection == "treatments":
            for name in ("carbs", "insulin"):
                value = doc.get(name, _MISSING)
                if value is _MISSING:
                    v1_changes.append((name, None))
                elif not is_number(value) or not math.isfinite(value):
                    v1_changes.append((name, js_number(value)))
        stored.v1_suffix, stored.v1_override = _serving_patch(doc, v1_changes)

        # v3's default order: {identifier: 1, created_at: 1, date: 1}
        # (lib/api3/generic/search/input.js parseSort); no stored identifier sorts first.
        tail = (sort_key(doc.get("created_at", _MISSING)), sort_key(doc.get("date", _MISSING)))
        stored.order_key = (
            (0, *tail) if stored.identifier is None else (1, stored.identifier, *tail)
        )

    def _commit(self, col: _Collection, stored: StoredDoc, new_doc: dict[str, Any]) -> None:
        """Swap in a changed document (same `_id`), re-deriving and re-indexing it."""
        old_event, old_identifier, old_modified = (
            stored.event_ms,
            stored.identifier,
            stored.srv_modified,
        )
        if old_modified is not None:
            col.remove_from_mod_index(stored)
        _unlink_sys_time(col, stored)
        self._derive(col.name, stored, new_doc)
        _link_sys_time(col, stored)
        if stored.event_ms != old_event:
            stored_event = stored.event_ms
            stored.event_ms = old_event
            col.remove_from_time_index(stored)
            stored.event_ms = stored_event
            col.add_to_time_index([stored])
        if stored.srv_modified is not None:
            col.add_to_mod_index(stored)
        if old_identifier != stored.identifier:
            if old_identifier is not None and col.by_identifier.get(old_identifier) is stored:
                del col.by_identifier[old_identifier]
            if stored.identifier is not None:
                col.by_identifier[stored.identifier] = stored
        col.identifier_order = None

    def _add(self, col: _Collection, records: Sequence[StoredDoc]) -> None:
        for stored in records:
            col.by_oid[stored.oid] = stored
            _link_sys_time(col, stored)
            if stored.identifier is not None:
                col.by_identifier[stored.identifier] = stored
            if stored.srv_modified is not None:
                col.add_to_mod_index(stored)
        col.add_to_time_index(records)
        if records:
            col.identifier_order = None

    def _remove(self, col: _Collection, stored: StoredDoc) -> None:
        col.remove_from_time_index(stored)
        if stored.srv_modified is not None:
            col.remove_from_mod_index(stored)
        if stored.identifier is not None and col.by_identifier.get(stored.identifier) is stored:
            del col.by_identifier[stored.identifier]
        del col.by_oid[stored.oid]
        _unlink_sys_time(col, stored)
        col.identifier_order = None

    def at_event_time(self, collection: str, ms: int) -> list[StoredDoc]:
        """Records whose event-time key is exactly `ms` (candidates for an equality match on
        the indexed field)."""
        col = self._collections[collection]
        with self.lock:
            return list(self._iter_range(col.time_keys, col.time_docs, ms, ms, False))

    # ---------------------------------------------------------------- access

    def count(self, collection: str, *, include_deleted: bool = False) -> int:
        """How many documents a collection holds (valid ones unless asked otherwise)."""
        with self.lock:
            docs = self._collections[collection].by_oid.values()
            if include_deleted:
                return len(docs)
            return sum(1 for stored in docs if stored.is_valid)

    def find_one(self, collection: str, identifier: str) -> StoredDoc | None:
        """The record by stored `identifier`, else by `_id` (v3's filterForOne, which prefers
        the document that has an identifier)."""
        col = self._collections[collection]
        with self.lock:
            found = col.by_identifier.get(identifier)
            if found is None and is_object_id(identifier):
                found = col.by_oid.get(identifier.lower())
            return found

    def find_by_oid(self, collection: str, oid: str) -> StoredDoc | None:
        with self.lock:
            return self._collections[collection].by_oid.get(oid.lower())

    def get(self, collection: str, identifier: str) -> dict[str, Any] | None:
        """One stored document (with `_id`), by `identifier` or `_id`."""
        stored = self.find_one(collection, identifier)
        return stored.full_doc() if stored else None

    def documents(self, collection: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every stored document (with `_id`), oldest event first: for tests and debugging."""
        with self.lock:
            records = list(self._collections[collection].time_docs)
        return [stored.full_doc() for stored in records if include_deleted or stored.is_valid]

    def records(self, collection: str) -> list[StoredDoc]:
        """Every record, oldest event first (a snapshot)."""
        with self.lock:
            return list(self._collections[collection].time_docs)

    def last_modified(self) -> dict[str, int]:
        """`lib/api3/specific/lastModified.js`: per collection, the greater of the newest stored
        `srvModified` and the newest fallback date field (`date` for entries, `created_at`
        elsewhere, none for settings); collections with neither are left out."""
        out: dict[str, int] = {}
        with self.lock:
            for name, col in self._collections.items():
                best = col.mod_keys[-1] if col.mod_keys else None
                fallback = self._newest_fallback(name, col)
                if fallback is not None and (best is None or best < fallback):
                    best = fallback
                if best:
                    out[name] = best
        return out

    def _newest_fallback(self, name: str, col: _Collection) -> int | None:
        fallback_field = V3_FALLBACK_DATE_FIELDS.get(name)
        if fallback_field is None:
            return None
        if INDEX_FIELDS[name][0] == fallback_field:
            for stored in reversed(col.time_docs):
                if stored.key_exact:
                    return stored.event_ms
            return None
        newest: int | None = None
        for stored in col.time_docs:
            value = time_value_ms(stored.doc.get(fallback_field))
            if value is not None and (newest is None or value > newest):
                newest = value
        return newest

    def _identifier_order(self, col: _Collection) -> list[StoredDoc]:
        if col.identifier_order is None:
            col.identifier_order = sorted(col.by_oid.values(), key=lambda s: (s.order_key, s.seq))
        return col.identifier_order

    def _iter_range(
        self,
        keys: list[int],
        docs: list[StoredDoc],
        low: int | None,
        high: int | None,
        descending: bool,
    ) -> Iterator[StoredDoc]:
        start = 0 if low is None else bisect_left(keys, low)
        stop = len(keys) if high is None else bisect_right(keys, high)
        positions = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        for position in positions:
            yield docs[position]

    # ---------------------------------------------------------------- queries

    def select(self, collection: str, query: Query) -> list[StoredDoc]:
        """Run a query, walking an index when the order allows it.

        Fast paths: order by the collection's event-time field (v1, and v3 `sort=date` on
        entries / `sort=created_at` elsewhere), by `srvModified` when a range condition on
        it leaves out documents without one (history), or v3's default order; each starts at
        a bisected bound and stops once `skip + limit` documents matched. Any other order
        filters and sorts everything.
        """
        index_field, index_as_time = INDEX_FIELDS[collection]
        col = self._collections[collection]
        with self.lock:
            candidates: Iterable[StoredDoc]
            walked = query.sort_field
            if query.sort_field == index_field:
                low, high = _bounds(query.predicates, index_field, index_as_time)
                candidates = self._iter_range(
                    col.time_keys, col.time_docs, low, high, query.descending
                )
            elif query.sort_field == "srvModified" and _has_range(query.predicates, "srvModified"):
                low, high = _bounds(query.predicates, "srvModified", False)
                candidates = self._iter_range(
                    col.mod_keys, col.mod_docs, low, high, query.descending
                )
            elif query.sort_field is None:
                ordered = self._identifier_order(col)
                candidates = reversed(ordered) if query.descending else ordered
                walked = None
            else:
                return self._select_sorted(collection, col, query)
            return _take(candidates, _Filter(collection, query.predicates, walked), query)

    def _select_sorted(self, collection: str, col: _Collection, query: Query) -> list[StoredDoc]:
        field_name = query.sort_field or "identifier"
        check = _Filter(collection, query.predicates)
        keyed = [
            (sort_key(lookup(stored.doc, field_name)), stored.order_key, stored.seq, stored)
            for stored in self._identifier_order(col)
            if (stored.is_valid or not query.only_valid) and check(stored)
        ]
        keyed.sort(key=lambda item: (item[0], item[1], item[2]), reverse=query.descending)
        end = None if query.limit is None else query.skip + query.limit
        return [item[3] for item in keyed[query.skip : end]]

    def count_matching(self, collection: str, predicates: Sequence[Predicate]) -> int:
        """How many documents satisfy every condition (MongoDB's `$match` + `$group` count)."""
        return len(
            self.select(
                collection,
                Query(
                    predicates=tuple(predicates),
                    sort_field=INDEX_FIELDS[collection][0],
                    only_valid=False,
                ),
            )
        )

    # ---------------------------------------------------------------- seeding

    def insert(
        self, collection: str, docs: Iterable[Mapping[str, Any]], *, api: Api | None = None
    ) -> list[dict[str, Any]]:
        """Store documents as they would sit in MongoDB after an upload; return them as stored.

        `api` (default: the store's `uploaded_through`) is the API they came through:

        - "v1": only `_id` is added (an uploader's 24-hex `_id` is kept; a UUID `_id`, as Loop
          and Trio send, becomes `identifier`, as v1 does with UUID_HANDLING on).
        - "v3": `_id`, `identifier` (UUID-shaped; an uploader's own is kept), `srvCreated` and
          `srvModified`; seeded with the event time plus an upload delay, or the current
          server time for a late upload or a broken clock.

        A document whose `identifier` is already stored replaces it (same `_id`).
        """
        chosen: Api = api or self.uploaded_through
        if chosen not in APIS:
            raise ValueError(f"api must be one of {APIS}, not {chosen!r}")
        col = self._collections[collection]
        with self.lock:
            if chosen == "v1":
                return self._insert_v1(col, docs)
            return self._insert_v3(col, docs)

    def _split_id(
        self, col: _Collection, doc: dict[str, Any]
    ) -> tuple[str | None, StoredDoc | None]:
        """Take `_id` out of a document: (24-hex `_id` to keep, or None; existing record with
        the document's identifier, if any)."""
        raw_id = doc.pop("_id", None)
        if isinstance(raw_id, str) and raw_id and not is_object_id(raw_id):
            if not doc.get("identifier"):
                doc["identifier"] = raw_id  # UUID_HANDLING: Loop/Trio send a UUID as _id
            raw_id = None
        identifier = doc.get("identifier")
        existing = (
            col.by_identifier.get(js_string(identifier)) if identifier not in (None, "") else None
        )
        keep = raw_id.lower() if is_object_id(raw_id) else None
        if keep is not None and keep in col.by_oid and existing is None:
            existing = col.by_oid[keep]
        return keep, existing

    def _insert_v1(
        self, col: _Collection, docs: Iterable[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        new_records: list[StoredDoc] = []
        new_ids: set[str] = set()
        out: list[dict[str, Any]] = []
        for raw in docs:
            doc = dict(raw)
            if new_ids and not new_ids.isdisjoint(_id_keys(doc)):
                new_records, new_ids = self._add_now(col, new_records)
            keep, existing = self._split_id(col, doc)
            if existing is not None:
                self._commit(col, existing, doc)
                out.append(existing.full_doc())
                continue
            seq, oid = self._new_oid(col.name)
            stored = self._record(col.name, seq, keep or oid, doc, "v1")
            new_records.append(stored)
            new_ids.update(_stored_id_keys(stored))
            out.append({"_id": stored.oid, **doc})
        self._add(col, new_records)
        return out

    def _add_now(
        self, col: _Collection, records: list[StoredDoc]
    ) -> tuple[list[StoredDoc], set[str]]:
        """Add a batch's records so far: a later document of the batch with one of their ids
        replaces that record, as it would had it come in a later upload."""
        self._add(col, records)
        return [], set()

    def _insert_v3(
        self, col: _Collection, docs: Iterable[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        now = self.now_ms()
        prepared: list[tuple[int, int, dict[str, Any]]] = []
        for raw in docs:
            doc = dict(raw)
            self._seq += 1
            event = event_time_ms(col.name, doc)
            if event is None or event < MIN_TIMESTAMP:
                candidate = now  # broken or missing clock: stamped when it arrives
            else:
                candidate = min(event + self._upload_delay_ms(self._seq), now)
            prepared.append((candidate, self._seq, doc))
        prepared.sort(key=lambda item: (item[0], item[1]))

        new_records: list[StoredDoc] = []
        new_ids: set[str] = set()
        out: list[dict[str, Any]] = []
        for candidate, seq, doc in prepared:
            srv = max(candidate, col.last_modified + 1)
            col.last_modified = srv
            if new_ids and not new_ids.isdisjoint(_id_keys(doc)):
                new_records, new_ids = self._add_now(col, new_records)
            keep, existing = self._split_id(col, doc)
            if existing is not None:
                old = existing.doc
                doc["identifier"] = existing.identifier or existing.oid
                doc["srvCreated"] = old.get("srvCreated", srv)
                doc["srvModified"] = srv
                self._commit(col, existing, doc)
                out.append(existing.full_doc())
                continue
            oid, made_identifier = self._ids(col.name, seq)
            if keep is not None:
                oid = keep
            while oid in col.by_oid:
                oid = hashlib.blake2b(oid.encode(), digest_size=12).hexdigest()
            if doc.get("identifier") in (None, ""):
                doc["identifier"] = made_identifier
            doc["srvCreated"] = srv
            doc["srvModified"] = srv
            stored = self._record(col.name, seq, oid, doc, "v3")
            new_records.append(stored)
            new_ids.update(_stored_id_keys(stored))
            out.append({"_id": oid, **doc})
        self._add(col, new_records)
        return out

    def load(
        self, documents: Mapping[str, Sequence[Mapping[str, Any]]], *, api: Api | None = None
    ) -> None:
        """Insert a generator's output ({collection: [docs]}), collection by collection.

        The cyclic garbage collector is paused meanwhile: a subject-year allocates ~1M
        objects that are all kept, and repeated collections would only re-scan them.
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for collection, docs in documents.items():
                if collection in self._collections:
                    self.insert(collection, docs, api=api)
        finally:
            if was_enabled:
                gc.enable()

    # ---------------------------------------------------------------- edits (tests, admin)

    def edit(
        self,
        collection: str,
        identifier: str,
        changes: Mapping[str, Any],
        *,
        unset: Iterable[str] = (),
        api: Api = "v3",
    ) -> dict[str, Any]:
        """Change fields of a stored document, as a user editing a treatment would.

        api="v3" (a v3 PATCH) sets a new, strictly greater `srvModified`, so that v3 history
        reports the edit, also for a v1 upload (which then enters history). api="v1" (the
        careportal's `PUT /api/v1/treatments`) changes the fields and nothing else: v3
        history cannot see it.
        """
        unset = list(unset)
        forbidden = (set(changes) | set(unset)) & SERVER_FIELDS
        if forbidden:
            raise ValueError(f"server-owned fields cannot be edited: {sorted(forbidden)}")
        col = self._collections[collection]
        with self.lock:
            stored = self.find_one(collection, identifier)
            if stored is None:
                raise KeyError(f"{collection}/{identifier} not found")
            new_doc = stored.doc
            new_doc.update(changes)
            for name in unset:
                new_doc.pop(name, None)
            if api == "v3":
                new_doc["srvModified"] = self.next_srv_modified(collection)
            self._commit(col, stored, new_doc)
            return stored.full_doc()

    def delete(
        self,
        collection: str,
        identifier: str,
        *,
        permanent: bool = False,
        subject: str | None = None,
    ) -> dict[str, Any] | None:
        """Delete a document the way API v3 DELETE does (`lib/api3/generic/delete/operation.js`).

        Soft (default): `isValid: false` and a new `srvModified` (and `modifiedBy` when a
        subject did it), so v3 history reports the deletion, v3 search hides it, and v1 still
        returns it, with `isValid: false`. `permanent=True` removes it outright (v1 DELETE,
        or v3 `?permanent=true`): no reader can learn about it.
        """
        col = self._collections[collection]
        with self.lock:
            stored = self.find_one(collection, identifier)
            if stored is None:
                raise KeyError(f"{collection}/{identifier} not found")
            if permanent:
                self._remove(col, stored)
                return None
            self.update_fields(
                collection,
                stored,
                {"isValid": False, "srvModified": self.next_srv_modified(collection)}
                | ({"modifiedBy": subject} if subject else {}),
            )
            return stored.full_doc()

    # ---------------------------------------------------------------- primitives for the APIs

    def update_fields(self, collection: str, stored: StoredDoc, fields: Mapping[str, Any]) -> None:
        """MongoDB `updateOne({_id}, {$set: fields})` on one record."""
        with self.lock:
            new_doc = stored.doc
            for key, value in fields.items():
                _set_path(new_doc, key, value)
            self._commit(self._collections[collection], stored, new_doc)

    def replace(self, collection: str, stored: StoredDoc, doc: Mapping[str, Any]) -> None:
        """MongoDB `replaceOne`: the whole document is swapped, `_id` is kept."""
        with self.lock:
            self._commit(self._collections[collection], stored, dict(doc))

    def add(
        self, collection: str, doc: Mapping[str, Any], *, created_by: Api, oid: str | None = None
    ) -> StoredDoc:
        """MongoDB `insertOne` of a prepared document; returns its record (with a new `_id`)."""
        col = self._collections[collection]
        with self.lock:
            seq, made = self._new_oid(collection)
            if oid is not None:
                oid = oid.lower()
                if oid in col.by_oid:
                    raise DuplicateKeyError(f"E11000 duplicate key error: _id {oid}")
            stored = self._record(collection, seq, oid or made, dict(doc), created_by)
            self._add(col, [stored])
            return stored

    def remove(self, collection: str, stored: StoredDoc) -> None:
        """MongoDB `deleteOne({_id})`."""
        with self.lock:
            self._remove(self._collections[collection], stored)

    def v3_identify(
        self, collection: str, identifier: Any, doc: Mapping[str, Any] | None = None
    ) -> StoredDoc | None:
        """The stored document a v3 write is about, or None.

        `identifyingFilter` + `findOneFilter` of `lib/api3/storage/mongoCollection`: the
        document with that `identifier`; else, for a 24-hex identifier, the one with that
        `_id` and no identifier (a v1 upload); else, when `doc` is given (create) and has
        every dedup field of the collection, one without identifier whose values all equal.
        """
        col = self._collections[collection]
        with self.lock:
            if identifier:
                key = js_string(identifier)
                found = col.by_identifier.get(key)
                if found is not None:
                    return found
                if is_object_id(key):
                    found = col.by_oid.get(key.lower())
                    if found is not None and found.identifier is None:
                        return found
            fields = V3_DEDUP_FIELDS.get(collection, ())
            if doc is None or not fields or any(name not in doc for name in fields):
                return None
            index_field, as_time = INDEX_FIELDS[collection]
            candidates: Iterable[StoredDoc] = col.by_oid.values()
            if fields[0] == index_field:
                ms = time_value_ms(doc[index_field]) if as_time else doc[index_field]
                if not is_number(ms) or not float(ms).is_integer():
                    return None
                at = int(ms)
                candidates = self._iter_range(col.time_keys, col.time_docs, at, at, False)
            for stored in candidates:
                if stored.identifier is not None:
                    continue
                old = stored.doc
                if all(match_value(old.get(name, _MISSING), "eq", doc[name]) for name in fields):
                    return stored
            return None

    # ---------------------------------------------------------------- v1 uploads

    def v1_create(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Run API v1's upload pipeline (`POST /api/v1/<collection>`); return what v1 answers.

        entries (`lib/server/entries.js`): `sysTime`/`utcOffset` from `dateString` or `date`,
        `dateString` rewritten to UTC, then an upsert on {sysTime, type} ($set, so a re-upload
        merges into the stored entry and keeps its server fields).
        treatments (`lib/server/treatments.js` prepareData): `created_at` to UTC ISO,
        `utcOffset`, numbers coerced, empty fields dropped, then replaceOne upsert on
        `identifier` (or `_id`, else {created_at, eventType}): the stored document is replaced
        whole, server fields included.
        devicestatus, profile (`lib/server/devicestatus.js`, `profile.js`): insertMany after
        normalising `created_at` (devicestatus) or adding it when missing (profile).
        Nothing here sets `identifier` (except from a UUID `_id`), `srvCreated`,
        `srvModified` or `isValid`. Raises `InvalidIdError` for a bad `_id` where v1
        validates it (devicestatus, profile: `lib/api/shared/objectid-validation.js`).
        """
        with self.lock:
            if collection == "entries":
                return [self._v1_entry(dict(doc)) for doc in docs]
            if collection == "treatments":
                return [self._v1_treatment(dict(doc)) for doc in docs]
            if collection in ("devicestatus", "profile", "food"):
                for doc in docs:
                    raw_id = doc.get("_id")
                    if raw_id is not None and not is_object_id(raw_id):
                        raise InvalidIdError(raw_id)
                out: list[dict[str, Any]] = []
                for raw in docs:
                    doc = dict(raw)
                    if collection == "devicestatus":
                        _v1_normalise_created_at(doc, self.now_ms())
                    elif "created_at" not in doc or not doc["created_at"]:
                        doc["created_at"] = iso_ms(self.now_ms())
                    raw_id = doc.pop("_id", None)
                    stored = self.add(
                        collection, doc, created_by="v1", oid=raw_id if raw_id else None
                    )
                    out.append({**doc, "_id": stored.oid})
                return out
            raise ValueError(f"v1 cannot create {collection}")

    def _normalise_v1_id(self, doc: dict[str, Any]) -> None:
        """normalizeEntryId / normalizeTreatmentId with UUID_HANDLING on (the default)."""
        raw_id = doc.get("_id")
        if isinstance(raw_id, str) and not is_object_id(raw_id):
            if not doc.get("identifier"):
                doc["identifier"] = raw_id
            del doc["_id"]
        elif isinstance(raw_id, str):
            doc["_id"] = raw_id.lower()

    def _v1_entry(self, doc: dict[str, Any]) -> dict[str, Any]:
        self._normalise_v1_id(doc)
        # _sysTime: parseZone(dateString), else moment(date), else now; an invalid moment
        # still counts as "set" (it is an object), giving null sysTime and utcOffset.
        moment: tuple[int, int] | None
        if doc.get("dateString"):
            moment = parse_zone(js_string(doc["dateString"]))
        elif doc.get("date"):
            date = doc["date"]
            ms = date if is_number(date) else parse_iso_ms(js_string(date))
            moment = (math.trunc(ms), 0) if ms is not None and math.isfinite(ms) else None
        else:
            moment = (self.now_ms(), 0)
        doc["utcOffset"] = moment[1] if moment else None
        doc["sysTime"] = iso_ms(moment[0]) if moment else None
        if doc.get("dateString"):
            doc["dateString"] = doc["sysTime"]
        col = self._collections["entries"]
        existing: StoredDoc | None = None
        if doc["sysTime"] and doc.get("type"):  # upsertQueryFor: {sysTime, type}
            existing = next(
                (
                    stored
                    for stored in col.by_sys_time.get(doc["sysTime"], ())
                    if match_value(stored.doc.get("type", _MISSING), "eq", doc["type"])
                ),
                None,
            )
        raw_id = doc.pop("_id", None)
        if existing is not None:
            self.update_fields("entries", existing, doc)
            return doc  # merged into a stored entry: v1 answers without its _id
        stored = self.add("entries", doc, created_by="v1", oid=raw_id)
        return {**doc, "_id": stored.oid}

    def _v1_treatment(self, doc: dict[str, Any]) -> dict[str, Any]:
        if not doc.get("created_at"):
            doc["created_at"] = iso_ms(self.now_ms())  # lib/api/treatments/index.js
        self._normalise_v1_id(doc)
        _prepare_treatment(doc, self.now_ms())
        existing: StoredDoc | None = None
        col = self._collections["treatments"]
        if doc.get("identifier"):  # upsertQueryFor: identifier first
            doc.pop("_id", None)
            existing = col.by_identifier.get(js_string(doc["identifier"]))
        elif doc.get("_id"):
            existing = col.by_oid.get(doc["_id"])
        else:  # {created_at, eventType}; a missing eventType is sent as null
            created_at = doc["created_at"]
            event_type = doc.get("eventType")
            existing = next(
                (
                    stored
                    for stored in self.at_event_time("treatments", parse_iso_ms(created_at) or 0)
                    if stored.doc.get("created_at") == created_at
                    and match_value(stored.doc.get("eventType", _MISSING), "eq", event_type)
                ),
                None,
            )
        raw_id = doc.pop("_id", None)
        if existing is not None:
            self.replace("treatments", existing, doc)
            if doc.get("identifier"):
                return {**doc, "_id": existing.oid}
            return doc
        stored = self.add("treatments", doc, created_by="v1", oid=raw_id)
        return {**doc, "_id": stored.oid}


def _id_keys(doc: Mapping[str, Any]) -> set[str]:
    """The ids by which `SiteStore._split_id` finds the record a document replaces."""
    raw_id = doc.get("_id")
    identifier = doc.get("identifier")
    if isinstance(raw_id, str) and raw_id and not is_object_id(raw_id) and not identifier:
        identifier = raw_id  # UUID_HANDLING
    keys = set()
    if identifier not in (None, ""):
        keys.add("identifier:" + js_string(identifier))
    if isinstance(raw_id, str) and is_object_id(raw_id):
        keys.add("_id:" + raw_id.lower())
    return keys


def _stored_id_keys(stored: StoredDoc) -> set[str]:
    keys = {"_id:" + stored.oid}
    if stored.identifier is not None:
        keys.add("identifier:" + stored.identifier)
    return keys


def _link_sys_time(col: _Collection, stored: StoredDoc) -> None:
    if stored.sys_time is not None:
        col.by_sys_time.setdefault(stored.sys_time, []).append(stored)


def _unlink_sys_time(col: _Collection, stored: StoredDoc) -> None:
    if stored.sys_time is None:
        return
    bucket = col.by_sys_time.get(stored.sys_time)
    if bucket is None:
        return
    bucket[:] = [other for other in bucket if other is not stored]
    if not bucket:
        del col.by_sys_time[stored.sys_time]


class InvalidIdError(ValueError):
    """An `_id` that is not 24 hex, where v1 answers 400."""

    def __init__(self, value: Any) -> None:
        super().__init__(
            f"Must be 24-character hex string or omit for auto-generation. Got: {value}"
        )
        self.value = value


class DuplicateKeyError(ValueError):
    """MongoDB's E11000: an `_id` that is already taken."""


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """MongoDB `$set` with a dotted path."""
    parts = path.split(".")
    current: Any = doc
    for part in parts[:-1]:
        nxt = current.get(part) if isinstance(current, dict) else None
        if not isinstance(nxt, dict):
            nxt = {}
            current[part] = nxt
        current = nxt
    current[parts[-1]] = value


def _v1_normalise_created_at(doc: dict[str, Any], now_ms: int) -> None:
    """`created_at` as `moment.parseZone(...).toISOString()` plus `utcOffset`, or now when
    it is not a valid time (lib/server/devicestatus.js create, treatments.js prepareData)."""
    value = doc.get("created_at")
    moment: tuple[int, int] | None = None
    if is_number(value) and math.isfinite(value):
        moment = (math.trunc(value), 0)
    elif isinstance(value, str) and value:
        moment = parse_zone(value)
    ms, offset = moment if moment is not None else (now_ms, 0)
    doc["created_at"] = iso_ms(ms)
    doc["utcOffset"] = offset


_TREATMENT_NUMBERS: Final = (
    "glucose",
    "targetTop",
    "targetBottom",
    "carbs",
    "insulin",
    "duration",
    "percent",
    "absolute",
    "relative",
    "preBolus",
)


def _prepare_treatment(doc: dict[str, Any], now_ms: int) -> None:
    """`prepareData` of `lib/server/treatments.js` (without the preBolus extra record).

    None stands for JavaScript's NaN here: every such field is then dropped.
    """
    _v1_normalise_created_at(doc, now_ms)
    for name in _TREATMENT_NUMBERS:
        doc[name] = js_number(doc[name]) if name in doc else None  # Number(undefined) is NaN
    if doc.get("eventTime"):
        moment = parse_zone(js_string(doc["eventTime"]))
        if moment is not None:
            doc["created_at"] = iso_ms(moment[0])
    if doc.get("eventType") == "Announcement":
        doc["isAnnouncement"] = True
    doc.pop("eventTime", None)
    for name in (
        "targetTop",
        "targetBottom",
        "carbs",
        "insulin",
        "percent",
        "relative",
        "notes",
        "preBolus",
    ):
        if not doc.get(name):  # deleteIfEmpty
            doc.pop(name, None)
    for name in ("absolute", "duration"):
        if doc.get(name, 0) is None:  # deleteIfNaN
            doc.pop(name, None)
    if not doc.get("glucose"):
        for name in ("glucose", "glucoseType", "units"):
            doc.pop(name, None)


def _take(candidates: Iterable[StoredDoc], check: _Filter, query: Query) -> list[StoredDoc]:
    """Filter candidates in order, skipping and limiting without reading past the page."""
    only_valid = query.only_valid
    skip = query.skip
    limit = query.limit
    found: list[StoredDoc] = []
    for stored in candidates:
        if only_valid and not stored.is_valid:
            continue
        if not check(stored):
            continue
        if skip:
            skip -= 1
            continue
        found.append(stored)
        if limit is not None and len(found) >= limit:
            break
    return found
