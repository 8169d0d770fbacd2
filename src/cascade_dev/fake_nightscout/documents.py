"""Rules Nightscout applies to documents: v3 routes and filters, update validation, normalisation."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from cascade_dev.fake_nightscout.matching import Predicate
from cascade_dev.fake_nightscout.protocol import (
    V3_COLLECTIONS,
    V3_IMMUTABLE,
    _error,
    _project,
    _Response,
    _v3_value,
)
from cascade_dev.fake_nightscout.records import StoredDoc, dumps
from cascade_dev.fake_nightscout.schema import INDEX_FIELDS, MIN_TIMESTAMP
from cascade_dev.fake_nightscout.values import (
    is_canonical_iso,
    is_number,
    js_number,
    js_string,
    parse_iso_ms,
    time_value_ms,
)

# --------------------------------------------------------------------------- request helpers


def _split_site(path: str) -> tuple[str, str]:
    """`/subject-01/api/v1/x` → ("subject-01", "/api/v1/x")."""
    stripped = path.lstrip("/")
    site_id, _, rest = stripped.partition("/")
    return site_id, "/" + rest


def _v3_route(method: str, parts: list[str]) -> tuple[str, str, str | None] | None:
    """(operation, collection, argument) of a v3 route (`lib/api3/generic/collection.js`
    mapRoutes, `lib/api3/index.js`), or None: Express falls through to the v3 404."""
    if method == "GET" and parts == ["lastModified"]:
        return "lastModified", "", None
    if method == "GET" and parts == ["status"]:
        return "status", "", None
    if not parts or parts[0] not in V3_COLLECTIONS:
        return None
    collection, rest = parts[0], parts[1:]
    if method == "GET":
        if not rest:
            return "search", collection, None
        if rest[0] == "history" and len(rest) <= 2:
            return "history", collection, rest[1] if len(rest) == 2 else None
        if len(rest) == 1:
            return "read", collection, rest[0]
    if method == "POST" and not rest:
        return "create", collection, None
    if len(rest) == 1:
        operation = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
        if operation:
            return operation, collection, rest[0]
    return None


def _v3_predicate(collection: str, field_name: str, op: str, raw: str) -> Predicate:
    """A v3 search condition (`lib/api3/generic/search/input.js` parseFilter,
    `lib/api3/storage/mongoCollection/utils.js` parseFilter)."""
    value = _v3_value(field_name, raw)
    if op in ("in", "nin"):
        return Predicate(field_name, op, tuple(js_string(value).split("|")))
    if op == "re":
        return Predicate(field_name, "re", re.compile(js_string(value)))
    index_field, as_time = INDEX_FIELDS[collection]
    if field_name == index_field and as_time and is_canonical_iso(value):
        parsed = parse_iso_ms(value)
        if parsed is not None:  # toISOString() strings order as their instants
            return Predicate(field_name, op, parsed, as_time=True)
    return Predicate(field_name, op, value)


def _v3_bodies(docs: Sequence[StoredDoc], fields: str | None) -> list[bytes]:
    if not fields or fields == "_all":
        return [doc.v3_json() for doc in docs]
    wanted = fields.split(",")
    return [dumps(_project(doc.v3_doc(), wanted)) for doc in docs]


def _normalized(stored: StoredDoc) -> dict[str, Any]:
    """The stored document as v3's storage layer returns it (normalizeDoc)."""
    doc = stored.doc
    if not doc.get("identifier"):
        doc["identifier"] = stored.oid
    return doc


def _resolved(stored: StoredDoc) -> dict[str, Any]:
    """normalizeDoc + resolveDates: what update/patch validate against."""
    return stored.v3_doc()


def _read_only(doc: Mapping[str, Any]) -> bool:
    return any(doc.get(name) is True for name in ("isReadOnly", "readOnly", "readonly"))


def _js_strict_equal(left: Any, right: Any) -> bool:
    """JavaScript's `===` on JSON values (objects and arrays are never equal: identity)."""
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if is_number(left) and is_number(right):
        return bool(left == right)
    return type(left) is type(right) and left == right


_UNDEFINED: Final = object()


def _validate_update(
    doc: Mapping[str, Any], old: Mapping[str, Any], *, patching: bool, deduplication: bool
) -> _Response | None:
    """`lib/api3/generic/update/validate.js`: read-only documents, immutable fields."""
    if _read_only(old):
        return _error(422, "Trying to modify read-only document")
    for name in V3_IMMUTABLE:
        if name == "identifier" and deduplication:
            continue
        if old.get("isValid") is False:
            continue
        if name in doc and not _js_strict_equal(doc[name], old.get(name, _UNDEFINED)):
            return _error(400, f"Field {name} cannot be modified by the client")
    return _validate_common(doc, patching=patching)


def _validate_common(doc: Mapping[str, Any], *, patching: bool) -> _Response | None:
    """`validateCommon` of `lib/api3/shared/operationTools.js`."""
    date = doc.get("date")
    if (not patching or "date" in doc) and (not is_number(date) or date <= MIN_TIMESTAMP):
        return _error(400, "Bad or missing date field")
    offset = doc.get("utcOffset")
    if (not patching or "utcOffset" in doc) and (
        not is_number(offset) or offset < -1440 or offset > 1440
    ):
        return _error(400, "Bad or missing utcOffset field")
    app = doc.get("app")
    if (not patching or "app" in doc) and (not isinstance(app, str) or not app.strip()):
        return _error(400, "Bad or missing app field")
    return None


def _unmodified_since_failed(old: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """If-Unmodified-Since older than the document's (whole-second) modification time."""
    header = headers.get("if-unmodified-since")
    since = parse_iso_ms(header) if header else None
    modified = old.get("srvModified")
    if since is None or not is_number(modified):
        return False
    return bool(modified - modified % 1000 > since - since % 1000)


def _to_mills(value: Any) -> float | None:
    """toMills of `lib/treatmentDuration.js`."""
    if value is None:
        return None
    if is_number(value):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and not value.strip():
        return None
    number = js_number(value)
    if number is not None:
        return float(number)
    parsed = time_value_ms(value) if isinstance(value, str) else None
    return float(parsed) if parsed is not None else None


def normalize_treatment_duration(
    doc: dict[str, Any], fallback: Mapping[str, Any] | None = None
) -> None:
    """`lib/treatmentDuration.js` normalizeTreatmentDuration, which v3 update and patch
    apply to every collection: `endmills` from a duration, then the duration from it."""
    fallback = fallback or {}
    base: float | None = None
    for source, name in (
        (doc, "mills"),
        (fallback, "mills"),
        (doc, "created_at"),
        (doc, "date"),
        (fallback, "created_at"),
        (fallback, "date"),
    ):
        base = _to_mills(source.get(name))
        if base is not None:
            break
    if doc.get("endmills") is None and base is not None:
        if "durationInMilliseconds" in doc:
            span = js_number(doc["durationInMilliseconds"]) or 0
            if span > 0:
                doc["endmills"] = base + span
        elif "duration" in doc:
            doc["endmills"] = base + (js_number(doc["duration"]) or 0) * 60_000
        elif "durationInMilliseconds" in fallback:
            span = js_number(fallback["durationInMilliseconds"]) or 0
            if span > 0:
                doc["endmills"] = base + span
        elif "duration" in fallback:
            doc["endmills"] = base + (js_number(fallback["duration"]) or 0) * 60_000
    end = js_number(doc["endmills"]) if "endmills" in doc else None
    if base is not None and end is not None and end >= base:
        span = end - base
        doc["durationInMilliseconds"] = _js_int(span)
        doc["duration"] = math.floor(span / 60_000 + 0.5)
    if "endmills" in doc and is_number(doc["endmills"]):
        doc["endmills"] = _js_int(doc["endmills"])


def _js_int(value: float | int) -> float | int:
    return int(value) if float(value).is_integer() else value
