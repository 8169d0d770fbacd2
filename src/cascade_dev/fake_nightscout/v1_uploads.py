"""API v1's upload pipeline: what `POST /api/v1/<collection>` does to a document it stores.

Nightscout's v1 writers (`lib/server/entries.js`, `treatments.js`, `devicestatus.js`,
`profile.js`) normalise times, coerce numbers, turn a UUID `_id` into `identifier`, and
upsert on their own keys, but add none of v3's server fields. Kept apart from the store,
which it drives through `add`, `update_fields` and `replace` under the store's lock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from cascade_dev.fake_nightscout.matching import _MISSING, match_value
from cascade_dev.fake_nightscout.records import StoredDoc
from cascade_dev.fake_nightscout.values import (
    is_number,
    is_object_id,
    iso_ms,
    js_number,
    js_string,
    parse_iso_ms,
    parse_zone,
)

if TYPE_CHECKING:
    from cascade_dev.fake_nightscout.store import SiteStore


class InvalidIdError(ValueError):
    """An `_id` that is not 24 hex, where v1 answers 400."""

    def __init__(self, value: Any) -> None:
        super().__init__(
            f"Must be 24-character hex string or omit for auto-generation. Got: {value}"
        )
        self.value = value


def v1_create(
    store: SiteStore, collection: str, docs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
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
    with store.lock:
        if collection == "entries":
            return [_v1_entry(store, dict(doc)) for doc in docs]
        if collection == "treatments":
            return [_v1_treatment(store, dict(doc)) for doc in docs]
        if collection in ("devicestatus", "profile", "food"):
            for doc in docs:
                raw_id = doc.get("_id")
                if raw_id is not None and not is_object_id(raw_id):
                    raise InvalidIdError(raw_id)
            out: list[dict[str, Any]] = []
            for raw in docs:
                doc = dict(raw)
                if collection == "devicestatus":
                    _v1_normalise_created_at(doc, store.now_ms())
                elif "created_at" not in doc or not doc["created_at"]:
                    doc["created_at"] = iso_ms(store.now_ms())
                raw_id = doc.pop("_id", None)
                stored = store.add(collection, doc, created_by="v1", oid=raw_id if raw_id else None)
                out.append({**doc, "_id": stored.oid})
            return out
        raise ValueError(f"v1 cannot create {collection}")


def _normalise_v1_id(doc: dict[str, Any]) -> None:
    """normalizeEntryId / normalizeTreatmentId with UUID_HANDLING on (the default)."""
    raw_id = doc.get("_id")
    if isinstance(raw_id, str) and not is_object_id(raw_id):
        if not doc.get("identifier"):
            doc["identifier"] = raw_id
        del doc["_id"]
    elif isinstance(raw_id, str):
        doc["_id"] = raw_id.lower()


def _v1_entry(store: SiteStore, doc: dict[str, Any]) -> dict[str, Any]:
    _normalise_v1_id(doc)
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
        moment = (store.now_ms(), 0)
    doc["utcOffset"] = moment[1] if moment else None
    doc["sysTime"] = iso_ms(moment[0]) if moment else None
    if doc.get("dateString"):
        doc["dateString"] = doc["sysTime"]
    col = store._collections["entries"]
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
        store.update_fields("entries", existing, doc)
        return doc  # merged into a stored entry: v1 answers without its _id
    stored = store.add("entries", doc, created_by="v1", oid=raw_id)
    return {**doc, "_id": stored.oid}


def _v1_treatment(store: SiteStore, doc: dict[str, Any]) -> dict[str, Any]:
    if not doc.get("created_at"):
        doc["created_at"] = iso_ms(store.now_ms())  # lib/api/treatments/index.js
    _normalise_v1_id(doc)
    _prepare_treatment(doc, store.now_ms())
    existing: StoredDoc | None = None
    col = store._collections["treatments"]
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
                for stored in store.at_event_time("treatments", parse_iso_ms(created_at) or 0)
                if stored.doc.get("created_at") == created_at
                and match_value(stored.doc.get("eventType", _MISSING), "eq", event_type)
            ),
            None,
        )
    raw_id = doc.pop("_id", None)
    if existing is not None:
        store.replace("treatments", existing, doc)
        if doc.get("identifier"):
            return {**doc, "_id": existing.oid}
        return doc
    stored = store.add("treatments", doc, created_by="v1", oid=raw_id)
    return {**doc, "_id": stored.oid}


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
