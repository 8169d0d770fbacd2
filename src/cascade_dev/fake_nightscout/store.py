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

The store is split by concern: `schema` (collections and their key fields), `values`
(Nightscout's reading of times, numbers, ids), `matching` (MongoDB conditions and order),
`records` (a stored document and how v1/v3 serve it), `indexes`, `selection` (running a
query over the indexes), `v1_uploads` (v1's write pipeline), and this module: `SiteStore`,
its server time and `srvModified`, seeding, edits and deletes.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cascade_dev.fake_nightscout import v1_uploads
from cascade_dev.fake_nightscout.indexes import (
    _Collection,
    _link_sys_time,
    _unlink_sys_time,
    iter_range,
)
from cascade_dev.fake_nightscout.matching import (
    _MISSING,
    Predicate,
    Query,
    lookup,
    match_value,
    sort_key,
)
from cascade_dev.fake_nightscout.records import StoredDoc, derive, new_record
from cascade_dev.fake_nightscout.schema import (
    APIS,
    COLLECTIONS,
    INDEX_FIELDS,
    MIN_TIMESTAMP,
    SERVER_FIELDS,
    V3_DEDUP_FIELDS,
    V3_FALLBACK_DATE_FIELDS,
    Api,
)
from cascade_dev.fake_nightscout.selection import _bounds, _Filter, _has_range, _take
from cascade_dev.fake_nightscout.values import (
    Clock,
    event_time_ms,
    is_number,
    is_object_id,
    js_string,
    time_value_ms,
    wall_clock_ms,
)


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
        derive(col.name, stored, new_doc)
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
            return list(iter_range(col.time_keys, col.time_docs, ms, ms, False))

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
                candidates = iter_range(col.time_keys, col.time_docs, low, high, query.descending)
            elif query.sort_field == "srvModified" and _has_range(query.predicates, "srvModified"):
                low, high = _bounds(query.predicates, "srvModified", False)
                candidates = iter_range(col.mod_keys, col.mod_docs, low, high, query.descending)
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
            stored = new_record(col.name, seq, keep or oid, doc, "v1")
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
            stored = new_record(col.name, seq, oid, doc, "v3")
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
            stored = new_record(collection, seq, oid or made, dict(doc), created_by)
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
                candidates = iter_range(col.time_keys, col.time_docs, at, at, False)
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

        See `v1_uploads.v1_create`. Raises `InvalidIdError` for a bad `_id` where v1
        validates it.
        """
        return v1_uploads.v1_create(self, collection, docs)


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
