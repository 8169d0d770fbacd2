"""In-memory document store for one fake Nightscout site, shaped like Nightscout's MongoDB.

One `SiteStore` is one Nightscout instance (one person). It keeps, per collection, the
documents as uploaders sent them plus the fields the real server adds (`_id`, `identifier`,
`srvCreated`, `srvModified`, `isValid`), and two sorted indexes so that the server can
answer range queries with `bisect` instead of scanning a subject-year on every request:

- by event time (`date` for entries, `created_at` for treatments/devicestatus/food,
  `startDate` for profile): what v1 sorts and pages by;
- by `srvModified`: what the v3 history feed pages by.

Every document is serialised to JSON once, when it is inserted or edited, so that serving a
1000-document page is a byte join rather than 1000 `json.dumps` calls.

Server times follow Nightscout's `lib/server/srv-dates.js`: within a collection every
`srvModified` is unique and later than every one handed out before it, so a history reader
paging with `srvModified > cursor` never skips a document at a page boundary. A seeded
(historic) document gets its event time plus a small upload delay as its server time, so a
subject-year looks as if it had been uploaded live; a document inserted after newer ones
(a late upload), or with a broken clock, gets the current server time, as the real server
would stamp it.
"""

from __future__ import annotations

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
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Final, Literal

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "food", "settings")
"""Every collection a Nightscout 15 instance serves through API v3."""

MIN_TIMESTAMP: Final = 946_684_800_000
"""2000-01-01 in ms: Nightscout's `MIN_TIMESTAMP`; earlier event times are a broken clock."""

SERVER_FIELDS: Final = frozenset({"_id", "identifier", "srvCreated", "srvModified", "isValid"})
"""Fields the server owns; `edit` refuses to change them."""

_IDENTIFIER_NAMESPACE: Final = uuid.UUID("6e696768-7473-636f-7574-526f636b7321")  # "nightscoutRocks!"
_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$")

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
    Cached because uploaders repeat the same strings and queries repeat the same bounds.
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
    return isinstance(value, int | float) and not isinstance(value, bool)


def time_value_ms(value: object) -> int | None:
    """Epoch ms of a stored time field: a number of ms, a numeric string, or an ISO string."""
    if is_number(value):
        number = float(value)  # type: ignore[arg-type]
        return int(number) if math.isfinite(number) else None
    if isinstance(value, str):
        if _NUMBER.match(value):
            number = float(value)
            return int(number) if math.isfinite(number) else None
        return parse_iso_ms(value)
    return None


def event_time_ms(collection: str, doc: Mapping[str, Any]) -> int | None:
    """When the event a document records happened, by that collection's time field.

    None means the document has no usable time; the store still keeps and serves it.
    """
    if collection == "entries":
        date = doc.get("date")
        if is_number(date):
            return time_value_ms(date)
        return time_value_ms(date) or time_value_ms(doc.get("dateString"))
    if collection == "profile":
        return time_value_ms(doc.get("startDate")) or time_value_ms(doc.get("created_at"))
    return time_value_ms(doc.get("created_at")) or time_value_ms(doc.get("date"))


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
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, default=str)
    except TypeError:
        text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8")


# --------------------------------------------------------------------------- records


@dataclass(slots=True, eq=False)
class StoredDoc:
    """One stored document with its pre-serialised JSON and its index keys.

    `body` is the API v3 form (no `_id`, as v3's `normalizeDoc` drops it); the v1 form is
    `v1_json()`, the same bytes with `_id` put first, as MongoDB returns it.
    """

    seq: int
    oid: str
    identifier: str
    doc: dict[str, Any]
    body: bytes
    event_ms: int
    srv_modified: int

    @property
    def is_valid(self) -> bool:
        """False once soft-deleted (v3 DELETE or AAPS marking `isValid: false`)."""
        return self.doc.get("isValid") is not False

    def v1_json(self) -> bytes:
        """The document as API v1 returns it: with MongoDB's `_id` first."""
        return b'{"_id":"' + self.oid.encode() + b'",' + self.body[1:]

    def v3_doc(self) -> dict[str, Any]:
        """A copy of the document as API v3 returns it (without `_id`)."""
        return {key: value for key, value in self.doc.items() if key != "_id"}


def _serialise(doc: Mapping[str, Any]) -> bytes:
    return dumps({key: value for key, value in doc.items() if key != "_id"})


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


# --------------------------------------------------------------------------- the store


class SiteStore:
    """All documents of one Nightscout site, with Nightscout's server-side bookkeeping.

    Thread-safe: the HTTP server reads while tests or admin endpoints write. Reads that
    walk an index must hold `lock` (see `cascade.source.fake.server`).
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
        self._collections: dict[str, _Collection] = {name: _Collection(name) for name in COLLECTIONS}

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

    # ---------------------------------------------------------------- access

    def collection(self, name: str) -> _Collection:
        """The collection by name; KeyError for anything Nightscout does not serve."""
        return self._collections[name]

    def count(self, collection: str, *, include_deleted: bool = False) -> int:
        """How many documents a collection holds (valid ones unless asked otherwise)."""
        with self.lock:
            docs = self._collections[collection].by_identifier.values()
            if include_deleted:
                return len(docs)
            return sum(1 for stored in docs if stored.is_valid)

    def get(self, collection: str, identifier: str) -> dict[str, Any] | None:
        """A copy of one stored document (with `_id`), by `identifier` or `_id`."""
        with self.lock:
            stored = self.find_one(collection, identifier)
            return dict(stored.doc) if stored else None

    def find_one(self, collection: str, identifier: str) -> StoredDoc | None:
        """The stored record by `identifier`, falling back to `_id` as v3's `filterForOne`."""
        col = self._collections[collection]
        return col.by_identifier.get(identifier) or col.by_oid.get(identifier)

    def documents(self, collection: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of every document, oldest event first (for tests and debugging)."""
        with self.lock:
            return [
                dict(stored.doc)
                for stored in self._collections[collection].time_docs
                if include_deleted or stored.is_valid
            ]

    def last_modified(self) -> dict[str, int]:
        """Greatest `srvModified` per non-empty collection (deleted documents count)."""
        with self.lock:
            return {
                name: col.last_modified
                for name, col in self._collections.items()
                if col.by_identifier
            }

    def identifier_order(self, collection: str) -> list[StoredDoc]:
        """Documents sorted by identifier: v3 search's order when no sort is asked for."""
        col = self._collections[collection]
        if col.identifier_order is None:
            col.identifier_order = sorted(
                col.by_identifier.values(), key=lambda stored: stored.identifier
            )
        return col.identifier_order

    def iter_time(
        self, collection: str, low: int | None, high: int | None, *, descending: bool
    ) -> Iterator[StoredDoc]:
        """Documents with low <= event_ms <= high in event order (caller holds `lock`)."""
        col = self._collections[collection]
        start = 0 if low is None else bisect_left(col.time_keys, low)
        stop = len(col.time_keys) if high is None else bisect_right(col.time_keys, high)
        docs = col.time_docs
        if descending:
            for position in range(stop - 1, start - 1, -1):
                yield docs[position]
        else:
            for position in range(start, stop):
                yield docs[position]

    def iter_modified(
        self, collection: str, low: int | None, high: int | None, *, descending: bool = False
    ) -> Iterator[StoredDoc]:
        """Documents with low <= srvModified <= high in srvModified order (caller holds `lock`)."""
        col = self._collections[collection]
        start = 0 if low is None else bisect_left(col.mod_keys, low)
        stop = len(col.mod_keys) if high is None else bisect_right(col.mod_keys, high)
        docs = col.mod_docs
        if descending:
            for position in range(stop - 1, start - 1, -1):
                yield docs[position]
        else:
            for position in range(start, stop):
                yield docs[position]

    # ---------------------------------------------------------------- writes

    def insert(self, collection: str, docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Store documents as a Nightscout server would on upload; return them as stored.

        Adds `_id` (24 hex), `identifier` (UUID; an uploader's own is kept), `srvCreated`,
        `srvModified` and `isValid: true`. A document whose `identifier` is already stored
        replaces it (Nightscout's upsert by identifier): same `_id` and `srvCreated`, new
        `srvModified`.
        """
        col = self._collections[collection]
        with self.lock:
            now = self.now_ms()
            prepared: list[tuple[int, int, dict[str, Any], int | None]] = []
            for raw in docs:
                doc = dict(raw)
                self._seq += 1
                seq = self._seq
                event = event_time_ms(collection, doc)
                if event is None or event < MIN_TIMESTAMP:
                    candidate = now  # broken or missing clock: stamped when it arrives
                else:
                    candidate = min(event + self._upload_delay_ms(seq), now)
                prepared.append((candidate, seq, doc, event))
            prepared.sort(key=lambda item: (item[0], item[1]))

            new_docs: list[StoredDoc] = []
            stored_out: list[dict[str, Any]] = []
            for candidate, seq, doc, event in prepared:
                srv = max(candidate, col.last_modified + 1)
                stored = self._store_one(col, seq, doc, event, srv)
                if stored is not None:
                    new_docs.append(stored)
                    stored_out.append(stored.doc)
                else:
                    stored_out.append(col.by_identifier[str(doc["identifier"])].doc)
            col.add_to_time_index(new_docs)
            if new_docs:
                col.identifier_order = None
            return [dict(doc) for doc in stored_out]

    def _store_one(
        self, col: _Collection, seq: int, doc: dict[str, Any], event: int | None, srv: int
    ) -> StoredDoc | None:
        """Add one prepared document; None when it replaced an existing one in place."""
        raw_id = doc.pop("_id", None)
        identifier = doc.get("identifier")
        if isinstance(raw_id, str) and not _HEX24.match(raw_id) and not identifier:
            identifier = raw_id  # Loop/Trio send a UUID as _id; the server keeps it as identifier
        if identifier is not None and str(identifier) in col.by_identifier:
            existing = col.by_identifier[str(identifier)]
            self._replace(col, existing, doc, srv)
            return None
        oid = raw_id if isinstance(raw_id, str) and _HEX24.match(raw_id) else None
        if oid is None or oid in col.by_oid:
            oid = hashlib.sha1(f"{self.site_id}/{col.name}/{seq}".encode()).hexdigest()[:24]
        if identifier is None:
            identifier = str(uuid.uuid5(_IDENTIFIER_NAMESPACE, f"{self.site_id}/{col.name}/{seq}"))
        stored_doc: dict[str, Any] = {"_id": oid}
        stored_doc.update(doc)
        stored_doc["identifier"] = str(identifier)
        stored_doc["srvCreated"] = srv
        stored_doc["srvModified"] = srv
        stored_doc["isValid"] = True
        stored = StoredDoc(
            seq=seq,
            oid=oid,
            identifier=str(identifier),
            doc=stored_doc,
            body=_serialise(stored_doc),
            event_ms=event if event is not None else 0,
            srv_modified=srv,
        )
        col.by_identifier[stored.identifier] = stored
        col.by_oid[oid] = stored
        col.append_to_mod_index(stored)
        return stored

    def _replace(
        self, col: _Collection, stored: StoredDoc, doc: dict[str, Any], srv: int
    ) -> None:
        new_doc: dict[str, Any] = {"_id": stored.oid}
        new_doc.update(doc)
        new_doc["identifier"] = stored.identifier
        new_doc["srvCreated"] = stored.doc.get("srvCreated", srv)
        new_doc["isValid"] = True
        self._commit(col, stored, new_doc, srv)

    def _commit(
        self, col: _Collection, stored: StoredDoc, new_doc: dict[str, Any], srv: int
    ) -> None:
        """Swap in a changed document: new srvModified, re-serialised, re-indexed."""
        new_doc["srvModified"] = srv
        event = event_time_ms(col.name, new_doc)
        new_event = event if event is not None else 0
        if new_event != stored.event_ms:
            col.remove_from_time_index(stored)
            stored.event_ms = new_event
            col.add_to_time_index([stored])
        col.remove_from_mod_index(stored)
        stored.doc = new_doc
        stored.body = _serialise(new_doc)
        stored.srv_modified = srv
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
        forbidden = (set(changes) | set(unset)) & SERVER_FIELDS
        if forbidden:
            raise ValueError(f"server-owned fields cannot be edited: {sorted(forbidden)}")
        col = self._collections[collection]
        with self.lock:
            stored = self.find_one(collection, identifier)
            if stored is None:
                raise KeyError(f"{collection}/{identifier} not found")
            new_doc = dict(stored.doc)
            new_doc.update(changes)
            for name in unset:
                new_doc.pop(name, None)
            self._commit(col, stored, new_doc, self._next_srv_time(col))
            return dict(stored.doc)

    def delete(
        self, collection: str, identifier: str, *, permanent: bool = False
    ) -> dict[str, Any] | None:
        """Delete a document the way API v3 DELETE does.

        Soft (default): `isValid: false` and a new `srvModified`, so v3 history reports the
        deletion while v1 and v3 search stop returning it. `permanent=True` removes it
        outright (v1 DELETE, or `?permanent=true`): no reader can learn about it.
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
            new_doc = dict(stored.doc)
            new_doc["isValid"] = False
            self._commit(col, stored, new_doc, self._next_srv_time(col))
            return dict(stored.doc)

    def load(self, documents: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Insert a generator's output ({collection: [docs]}), collection by collection."""
        for collection, docs in documents.items():
            if collection in self._collections:
                self.insert(collection, docs)


DeleteMode = Literal["soft", "permanent"]
