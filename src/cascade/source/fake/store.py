"""In-memory document store for one fake Nightscout site, shaped like Nightscout's MongoDB.

One `SiteStore` is one Nightscout instance (one person). It keeps, per collection, the
documents as uploaders sent them plus the fields the real server adds (`_id`, `identifier`,
`srvCreated`, `srvModified`, `isValid`), and two sorted indexes so that the server can
answer range queries with `bisect` instead of scanning a subject-year on every request:

- by event time (`date` for entries, `created_at` for treatments/devicestatus/food,
  `startDate` for profile): what v1 sorts and pages by;
- by `srvModified`: what the v3 history feed pages by.

Each document is kept only as the JSON bytes it is served as (serialised once, on insert
or edit), plus the few values the indexes and common filters need. Serving a 1000-document
page is then a byte join, and a subject-year costs about half the memory of keeping dicts;
a filter on any other field parses the candidates it has to look at.

Server times follow Nightscout's `lib/server/srv-dates.js`: within a collection every
`srvModified` is unique and later than every one handed out before it, so a history reader
paging with `srvModified > cursor` never skips a document at a page boundary. A seeded
(historic) document gets its event time plus a small upload delay as its server time, so a
subject-year looks as if it had been uploaded live; a document inserted after newer ones
(a late upload), or with a broken clock, gets the current server time, as the real server
would stamp it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Final

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "food", "settings")
"""Every collection a Nightscout 15 instance serves through API v3."""

MIN_TIMESTAMP: Final = 946_684_800_000
"""2000-01-01 in ms: Nightscout's `MIN_TIMESTAMP`; earlier event times are a broken clock."""

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

_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$")
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

Clock = Callable[[], int]
"""A source of server time in epoch milliseconds."""


def wall_clock_ms() -> int:
    """The default store clock: the machine's wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- time parsing


@lru_cache(maxsize=65_536)
def parse_iso_ms(value: str) -> int | None:
    """Epoch ms of an ISO 8601 (or RFC 2822) string, or None when it is not a time.

    A string without an offset is read as UTC, as a Nightscout server running in UTC would.
    Cached because queries repeat the same bounds.
    """
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
    try:
        return int(parsed.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return None


def is_number(value: object) -> bool:
    """True for JSON numbers (bool is not a number in JSON or BSON)."""
    kind = type(value)
    if kind is int or kind is float:
        return True
    return isinstance(value, int | float) and kind is not bool


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
        number = float(value)  # type: ignore[arg-type]
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
        text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode()


# --------------------------------------------------------------------------- records


@dataclass(slots=True, eq=False)
class StoredDoc:
    """One stored document: its served JSON and the values indexes and filters need.

    `body` is the API v3 form (no `_id`: v3's `normalizeDoc` drops it); `v1_json()` is the
    same bytes with MongoDB's `_id` first, as API v1 returns it. `doc` parses `body`.
    """

    seq: int
    oid: str
    identifier: str
    body: bytes
    event_ms: int  # 0 when the document has no usable time
    key_exact: bool  # event_ms equals the indexed field's (numeric or parsed) value
    srv_modified: int
    is_valid: bool

    @property
    def doc(self) -> dict[str, Any]:
        """A fresh dict of the document as v3 serves it (without `_id`)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def full_doc(self) -> dict[str, Any]:
        """A fresh dict of the document as stored and served by v1 (with `_id` first)."""
        return {"_id": self.oid, **self.doc}

    def v1_json(self) -> bytes:
        """The document as API v1 returns it: with MongoDB's `_id` first."""
        return b'{"_id":"' + self.oid.encode() + b'",' + self.body[1:]


def v1_array(records: Sequence[StoredDoc]) -> bytes:
    """A JSON array of documents in v1 form, joined without copying each body twice."""
    parts: list[bytes | memoryview] = [b"["]
    for position, stored in enumerate(records):
        parts.append(b'{"_id":"' if position == 0 else b',{"_id":"')
        parts.append(stored.oid.encode())
        parts.append(b'",')
        parts.append(memoryview(stored.body)[1:])
    parts.append(b"]")
    return b"".join(parts)


@dataclass
class _Collection:
    """Documents of one collection and the two sorted indexes over them."""

    name: str
    by_identifier: dict[str, StoredDoc] = field(default_factory=dict)
    by_oid: dict[str, StoredDoc] = field(default_factory=dict)
    # Event-time index: parallel lists sorted by (event_ms, seq).
    time_keys: list[int] = field(default_factory=list)
    time_docs: list[StoredDoc] = field(default_factory=list)
    # srvModified index: parallel lists, strictly increasing keys (unique per collection).
    mod_keys: list[int] = field(default_factory=list)
    mod_docs: list[StoredDoc] = field(default_factory=list)
    last_modified: int = 0
    # Lazily rebuilt identifier order (v3's default sort); None when stale.
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

    def append_to_mod_index(self, stored: StoredDoc) -> None:
        self.mod_keys.append(stored.srv_modified)
        self.mod_docs.append(stored)
        self.last_modified = stored.srv_modified

    def remove_from_mod_index(self, stored: StoredDoc) -> None:
        position = bisect_left(self.mod_keys, stored.srv_modified)
        del self.mod_keys[position]
        del self.mod_docs[position]


# --------------------------------------------------------------------------- queries

_MISSING: Final = object()
_UNPARSEABLE: Final = object()


@dataclass(frozen=True, slots=True)
class Predicate:
    """One MongoDB-style condition on a (possibly dotted) field.

    Operators: eq ne gt gte lt lte in nin re exists. `as_time` compares the document's
    value parsed as a time (epoch ms) with a numeric `value`; otherwise values compare as
    MongoDB does: numbers with numbers, strings with strings, and values of different
    types are never ordered (so `$gt` is false and `$ne` is true).
    """

    path: str
    op: str
    value: Any
    as_time: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A search: conditions (all must hold), order, paging.

    `sort_field=None` is API v3's default order (by `identifier`). `only_valid` hides
    soft-deleted documents, as v3 search does; history passes False.
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
    if (
        (is_number(left) and is_number(right))
        or (isinstance(left, str) and isinstance(right, str))
        or (isinstance(left, bool) and isinstance(right, bool))
    ):
        return int(left > right) - int(left < right)
    if left is None and right is None:
        return 0
    if isinstance(left, dict | list) and type(left) is type(right):
        return 0 if left == right else None
    return None


def _equals(value: Any, wanted: Any) -> bool:
    if isinstance(value, list) and not isinstance(wanted, list):
        return any(_compare(item, wanted) == 0 for item in value)
    return _compare(value, wanted) == 0


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


def match_value(value: Any, op: str, wanted: Any) -> bool:
    """Whether an already looked-up value (maybe `_MISSING`) satisfies `op wanted`."""
    if op == "exists":
        return (value is not _MISSING) == bool(wanted)
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
        if isinstance(value, list):
            return any(isinstance(item, str) and wanted.search(item) for item in value)
        return isinstance(value, str) and wanted.search(value) is not None
    return _ordered(value, wanted, op)


def matches(doc: Mapping[str, Any], predicate: Predicate) -> bool:
    """Whether a document satisfies one condition."""
    value = lookup(doc, predicate.path)
    if predicate.as_time and value is not _MISSING:
        parsed = time_value_ms(value)
        value = _UNPARSEABLE if parsed is None else parsed
    return match_value(value, predicate.op, predicate.value)


_BSON_RANK: Final = {type(None): 1, int: 2, float: 2, str: 3, dict: 4, list: 5, bool: 8}


def sort_key(value: Any) -> tuple[int, Any]:
    """MongoDB's cross-type sort order (missing/null < numbers < strings < objects ...)."""
    if value is _MISSING:
        return (0, 0)
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
        self.cheap: list[tuple[str, Predicate]] = []
        self.indexed: list[Predicate] = []
        self.parsed: list[Predicate] = []
        self.valid_only = False
        for predicate in predicates:
            path = predicate.path
            if path == "srvModified" and walked == "srvModified" and _covered(predicate):
                continue  # the srvModified index key is always exact
            if path == "isValid" and predicate.op == "ne" and predicate.value is False:
                self.valid_only = True
                continue
            server_field = path in ("srvModified", "identifier", "_id") and not predicate.as_time
            validity = path == "isValid" and predicate.op in ("eq", "ne", "in", "nin", "exists")
            if server_field or validity:
                self.cheap.append((path, predicate))
            elif (
                path == index_field
                and predicate.as_time == index_as_time
                and is_number(predicate.value)
            ):
                self.indexed.append(predicate)
            else:
                self.parsed.append(predicate)
        self.indexed_covered = walked == index_field and all(_covered(p) for p in self.indexed)

    def __call__(self, stored: StoredDoc) -> bool:
        if self.valid_only and not stored.is_valid:
            return False
        for path, predicate in self.cheap:
            if path == "srvModified":
                value: Any = stored.srv_modified
            elif path == "identifier":
                value = stored.identifier
            elif path == "_id":
                value = stored.oid
            else:
                value = stored.is_valid
            if not match_value(value, predicate.op, predicate.value):
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


# --------------------------------------------------------------------------- the store


class SiteStore:
    """All documents of one Nightscout site, with Nightscout's server-side bookkeeping.

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
    ) -> None:
        self.site_id = site_id
        self.units = units
        self.timezone = timezone
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
        """Server time: the clock, but never going backwards (Nightscout's `srvDate`)."""
        with self.lock:
            now = max(self._clock(), self._last_now)
            self._last_now = now
            return now

    def _next_srv_time(self, col: _Collection) -> int:
        """A new `srvModified` for the collection: now, unique, after every earlier one."""
        return max(self.now_ms(), col.last_modified + 1)

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

    # ---------------------------------------------------------------- access

    def count(self, collection: str, *, include_deleted: bool = False) -> int:
        """How many documents a collection holds (valid ones unless asked otherwise)."""
        with self.lock:
            docs = self._collections[collection].by_identifier.values()
            if include_deleted:
                return len(docs)
            return sum(1 for stored in docs if stored.is_valid)

    def find_one(self, collection: str, identifier: str) -> StoredDoc | None:
        """The stored record by `identifier`, falling back to `_id` as v3's `filterForOne`."""
        col = self._collections[collection]
        with self.lock:
            return col.by_identifier.get(identifier) or col.by_oid.get(identifier)

    def get(self, collection: str, identifier: str) -> dict[str, Any] | None:
        """One stored document (with `_id`), by `identifier` or `_id`."""
        stored = self.find_one(collection, identifier)
        return stored.full_doc() if stored else None

    def documents(self, collection: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every document (with `_id`), oldest event first: for tests and debugging."""
        with self.lock:
            records = list(self._collections[collection].time_docs)
        return [stored.full_doc() for stored in records if include_deleted or stored.is_valid]

    def last_modified(self) -> dict[str, int]:
        """Greatest `srvModified` per non-empty collection (deleted documents count)."""
        with self.lock:
            return {
                name: col.last_modified
                for name, col in self._collections.items()
                if col.by_identifier
            }

    def _identifier_order(self, col: _Collection) -> list[StoredDoc]:
        if col.identifier_order is None:
            col.identifier_order = sorted(col.by_identifier.values(), key=lambda s: s.identifier)
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
        entries / `sort=created_at` elsewhere), by `srvModified` (history), or by
        `identifier` (v3's default); each starts at a bisected bound and stops once
        `skip + limit` documents matched. Any other order filters and sorts everything.
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
            elif query.sort_field == "srvModified":
                low, high = _bounds(query.predicates, "srvModified", False)
                candidates = self._iter_range(
                    col.mod_keys, col.mod_docs, low, high, query.descending
                )
            elif query.sort_field in (None, "identifier"):
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
            (sort_key(lookup(stored.doc, field_name)), stored.seq, stored)
            for stored in self._identifier_order(col)
            if (stored.is_valid or not query.only_valid) and check(stored)
        ]
        keyed.sort(key=lambda item: (item[0], item[1]), reverse=query.descending)
        end = None if query.limit is None else query.skip + query.limit
        return [stored for _, _, stored in keyed[query.skip : end]]

    # ---------------------------------------------------------------- writes

    def insert(self, collection: str, docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Store documents as a Nightscout server would on upload; return them as stored.

        Adds `_id` (24 hex), `identifier` (UUID-shaped; an uploader's own is kept),
        `srvCreated`, `srvModified` and `isValid: true`. A document whose `identifier` is
        already stored replaces it (Nightscout's upsert by identifier): same `_id` and
        `srvCreated`, new `srvModified`.
        """
        col = self._collections[collection]
        with self.lock:
            now = self.now_ms()
            prepared: list[tuple[int, int, dict[str, Any], int | None, bool]] = []
            for raw in docs:
                doc = dict(raw)
                self._seq += 1
                seq = self._seq
                event, exact = _event_time(collection, doc)
                if event is None or event < MIN_TIMESTAMP:
                    candidate = now  # broken or missing clock: stamped when it arrives
                else:
                    candidate = min(event + self._upload_delay_ms(seq), now)
                prepared.append((candidate, seq, doc, event, exact))
            prepared.sort(key=lambda item: (item[0], item[1]))

            new_records: list[StoredDoc] = []
            stored_out: list[dict[str, Any]] = []
            for candidate, seq, doc, event, exact in prepared:
                srv = max(candidate, col.last_modified + 1)
                stored_out.append(self._store_one(col, seq, doc, event, exact, srv, new_records))
            col.add_to_time_index(new_records)
            if new_records:
                col.identifier_order = None
            return stored_out

    def _store_one(
        self,
        col: _Collection,
        seq: int,
        doc: dict[str, Any],
        event: int | None,
        exact: bool,
        srv: int,
        new_records: list[StoredDoc],
    ) -> dict[str, Any]:
        """Store one prepared document (or replace the one with its identifier)."""
        raw_id = doc.pop("_id", None)
        identifier = doc.get("identifier")
        if isinstance(raw_id, str) and raw_id and not _HEX24.match(raw_id) and not identifier:
            identifier = raw_id  # Loop/Trio send a UUID as _id; Nightscout keeps it as identifier
        existing = col.by_identifier.get(str(identifier)) if identifier is not None else None
        if existing is not None:
            doc["identifier"] = existing.identifier
            doc["srvCreated"] = json.loads(existing.body).get("srvCreated", srv)
            doc["isValid"] = True
            self._commit(col, existing, doc, srv)
            return existing.full_doc()
        oid, made_identifier = self._ids(col.name, seq)
        if isinstance(raw_id, str) and _HEX24.match(raw_id) and raw_id not in col.by_oid:
            oid = raw_id.lower()
        identifier = made_identifier if identifier is None else str(identifier)
        doc["identifier"] = identifier
        doc["srvCreated"] = srv
        doc["srvModified"] = srv
        doc["isValid"] = True
        stored = StoredDoc(
            seq=seq,
            oid=oid,
            identifier=identifier,
            body=dumps(doc),
            event_ms=event if event is not None else 0,
            key_exact=exact,
            srv_modified=srv,
            is_valid=True,
        )
        col.by_identifier[identifier] = stored
        col.by_oid[oid] = stored
        col.append_to_mod_index(stored)
        new_records.append(stored)
        return {"_id": oid, **doc}

    def _commit(
        self, col: _Collection, stored: StoredDoc, new_doc: dict[str, Any], srv: int
    ) -> None:
        """Swap in a changed document: new srvModified, re-serialised, re-indexed."""
        new_doc.pop("_id", None)
        new_doc["srvModified"] = srv
        event, exact = _event_time(col.name, new_doc)
        new_event = event if event is not None else 0
        if new_event != stored.event_ms:
            col.remove_from_time_index(stored)
            stored.event_ms = new_event
            col.add_to_time_index([stored])
        col.remove_from_mod_index(stored)
        stored.body = dumps(new_doc)
        stored.key_exact = exact
        stored.srv_modified = srv
        stored.is_valid = new_doc.get("isValid") is not False
        col.append_to_mod_index(stored)

    def edit(
        self,
        collection: str,
        identifier: str,
        changes: Mapping[str, Any],
        *,
        unset: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Change fields of a stored document, as a user editing a treatment would.

        Bumps `srvModified` to a new, strictly greater server time so that v3 history
        reports the edit; v1 readers only see it if they read the document again.
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
            self._commit(col, stored, new_doc, self._next_srv_time(col))
            return stored.full_doc()

    def delete(
        self, collection: str, identifier: str, *, permanent: bool = False
    ) -> dict[str, Any] | None:
        """Delete a document the way API v3 DELETE does.

        Soft (default): `isValid: false` and a new `srvModified`, so v3 history reports the
        deletion while v1 and v3 search stop returning it. `permanent=True` removes it
        outright (v1 DELETE, or v3 `?permanent=true`): no reader can learn about it.
        """
        col = self._collections[collection]
        with self.lock:
            stored = self.find_one(collection, identifier)
            if stored is None:
                raise KeyError(f"{collection}/{identifier} not found")
            if permanent:
                col.remove_from_time_index(stored)
                col.remove_from_mod_index(stored)
                del col.by_identifier[stored.identifier]
                del col.by_oid[stored.oid]
                col.identifier_order = None
                return None
            new_doc = stored.doc
            new_doc["isValid"] = False
            self._commit(col, stored, new_doc, self._next_srv_time(col))
            return stored.full_doc()

    def load(self, documents: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Insert a generator's output ({collection: [docs]}), collection by collection.

        The cyclic garbage collector is paused meanwhile: a subject-year allocates ~1M
        objects that are all kept, and repeated collections would only re-scan them.
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for collection, docs in documents.items():
                if collection in self._collections:
                    self.insert(collection, docs)
        finally:
            if was_enabled:
                gc.enable()


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
