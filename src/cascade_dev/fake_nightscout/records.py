"""One stored document as the fake keeps it: its JSON bytes and what v1/v3 add to serve it.

A `StoredDoc` holds the document exactly as MongoDB would (bytes, without `_id`), the few
values the indexes and common filters need, and the members API v1 and v3 add when they
present it (v3's stand-in `identifier`/`srvModified`/`srvCreated`, v1's `Number()`ed
treatment fields). Serving a page is then a byte join, with no JSON encoding per request.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cascade_dev.fake_nightscout.matching import _MISSING, sort_key
from cascade_dev.fake_nightscout.schema import V3_FALLBACK_DATE_FIELDS, Api
from cascade_dev.fake_nightscout.values import (
    _event_time,
    is_number,
    js_number,
    js_string,
    parse_to_moment_ms,
)

_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

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


def new_record(
    collection: str, seq: int, oid: str, doc: dict[str, Any], created_by: Api
) -> StoredDoc:
    """A record for a document about to be stored (as given, with no server fields added)."""
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
    derive(collection, stored, doc)
    return stored


def derive(collection: str, stored: StoredDoc, doc: dict[str, Any]) -> None:
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
    stored.order_key = (0, *tail) if stored.identifier is None else (1, stored.identifier, *tail)
