"""Turn Nightscout documents into raw-table rows, or into rejects with a reason.

Nothing is dropped: a document either becomes a row (with the whole original kept as JSON) or
a reject (with the whole original kept as JSON and the reason). Numbers sent as strings are
coerced (uploaders do that); values that are not numbers at all are rejected, as are documents
whose event time is missing, unparseable, before 2000 or more than a day in the future.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from cascade.lake.schemas import raw_schema, rejects_schema

EARLIEST_PLAUSIBLE_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
FUTURE_TOLERANCE_MS = 24 * 3600 * 1000
MAX_MS = 253_402_300_799_999  # 9999-12-31: beyond it no timestamp column can hold the time
MAX_MAGNITUDE = 1e9  # typed numbers beyond this are corrupt, whatever the field
MAX_UTC_OFFSET_MINUTES = 16 * 60  # real offsets are -12:00..+14:00
# Glucose in mg/dL: Nightscout stores sensor error codes (5, 9, 10) and LOW/HIGH clamps (39,
# 401) as readings, and no meter reads above 1000; anything else is not a glucose value.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {"sgv": (0, 1000), "mbg": (0, 1000)}


class Rejected(ValueError):
    """A document that cannot become a row; the message is the reason stored in `raw.rejects`."""


def _ms_from_iso(value: str) -> int:
    text = value.strip()
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # Nightscout stores UTC; a bare timestamp means UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _offset_from_iso(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    offset = moment.utcoffset()
    return None if offset is None else int(offset.total_seconds() // 60)


def _ms_from_any(value: Any) -> int | None:
    """Epoch ms from a number, a numeric string or an ISO string; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Rejected(f"event time is a boolean: {value!r}")
    if isinstance(value, int | float):
        return _finite_ms(float(value), value)
    if isinstance(value, str):
        try:
            as_number = float(value)
        except ValueError:
            pass
        else:
            return _finite_ms(as_number, value)
        try:
            return _ms_from_iso(value)
        except ValueError:
            raise Rejected(f"unparseable event time {value[:40]!r}") from None
    raise Rejected(f"event time of unexpected type {type(value).__name__}")


def _finite_ms(number_: float, raw: Any) -> int:
    if not math.isfinite(number_) or abs(number_) > MAX_MS:
        raise Rejected(f"event time {str(raw)[:40]!r} is not a representable time")
    return int(number_)


# Where each collection keeps its event time, in order of preference.
_TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "entries": ("date", "dateString", "sysTime"),
    "treatments": ("created_at", "timestamp", "date", "mills"),
    "devicestatus": ("created_at", "date", "mills"),
    "profile": ("startDate", "created_at", "mills", "date"),
}


def event_ms(collection: str, doc: dict[str, Any]) -> int:
    for name in _TIME_FIELDS[collection]:
        ms = _ms_from_any(doc.get(name))
        if ms is not None:
            return ms
    raise Rejected(f"missing event time (none of {', '.join(_TIME_FIELDS[collection])})")


def number(doc: dict[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Rejected(f"{name} is a boolean, expected a number")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise Rejected(f"{name} is not a number: {value[:40]!r}") from None
    else:
        raise Rejected(f"{name} is a {type(value).__name__}, expected a number")
    if not math.isfinite(result):
        raise Rejected(f"{name} is not a finite number: {str(value)[:40]!r}")
    low, high = PLAUSIBLE_RANGES.get(name, (-MAX_MAGNITUDE, MAX_MAGNITUDE))
    if not low <= result <= high:
        raise Rejected(f"{name} {result:g} is outside {low:g}..{high:g}")
    return result


def _nested_number(container: Any, *path: str) -> float | None:
    for key in path:
        if not isinstance(container, dict):
            return None
        container = container.get(key)
    if isinstance(container, bool) or container is None:
        return None
    if isinstance(container, int | float | str):
        try:
            value = float(container)
        except ValueError:
            return None
        # a deep, optional field: an unusable value is left out, the document is kept whole
        return value if math.isfinite(value) and abs(value) <= MAX_MAGNITUDE else None
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


def _entry_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "entry_type": _text(doc.get("type")),
        "sgv_mg_dl": _int(number(doc, "sgv")),
        "mbg_mg_dl": number(doc, "mbg"),
        "direction": _text(doc.get("direction")),
        "delta_mg_dl": _nested_number(doc, "delta"),
        "noise": _int(_nested_number(doc, "noise")),
        "date_string": _text(doc.get("dateString")),
    }


def _treatment_fields(doc: dict[str, Any]) -> dict[str, Any]:
    smb = doc.get("isSMB")
    return {
        "event_type": _text(doc.get("eventType")),
        "insulin_units": number(doc, "insulin"),
        "carbs_grams": number(doc, "carbs"),
        "rate_units_per_hour": number(doc, "rate"),
        "absolute_units_per_hour": number(doc, "absolute"),
        "percent": _nested_number(doc, "percent"),
        "duration_minutes": number(doc, "duration"),
        "glucose": _nested_number(doc, "glucose"),
        "glucose_units": _text(doc.get("units")),
        "target_top": _nested_number(doc, "targetTop"),
        "target_bottom": _nested_number(doc, "targetBottom"),
        "is_smb": smb if isinstance(smb, bool) else None,
        "profile_name": _text(doc.get("profile")),
        "entered_by": _text(doc.get("enteredBy")),
        "notes": _text(doc.get("notes")),
    }


def _prediction(values: Any) -> list[float | None] | None:
    if not isinstance(values, list):
        return None
    return [
        float(v)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        else None
        for v in values
    ]


def _devicestatus_fields(doc: dict[str, Any]) -> dict[str, Any]:
    loop, openaps = doc.get("loop"), doc.get("openaps")
    row: dict[str, Any] = {
        "pump_reservoir_units": _nested_number(doc, "pump", "reservoir"),
        "pump_battery_percent": _nested_number(doc, "pump", "battery", "percent"),
        "uploader_battery_percent": _nested_number(doc, "uploader", "battery")
        or _nested_number(doc, "uploaderBattery"),
    }
    if isinstance(loop, dict):
        predicted = loop.get("predicted") or {}
        enacted = loop.get("enacted") or {}
        start = predicted.get("startDate") if isinstance(predicted, dict) else None
        row |= {
            "loop_system": "loop",
            "iob_units": _nested_number(loop, "iob", "iob"),
            "cob_grams": _nested_number(loop, "cob", "cob"),
            "predicted_mg_dl": _prediction(
                predicted.get("values") if isinstance(predicted, dict) else None
            ),
            "predicted_start_at": _safe_us(start),
            "enacted_rate_units_per_hour": _nested_number(enacted, "rate"),
            "enacted_duration_minutes": _nested_number(enacted, "duration"),
        }
        values = row["predicted_mg_dl"]
        row["eventual_bg_mg_dl"] = values[-1] if values else None
    elif isinstance(openaps, dict):
        suggested = openaps.get("suggested") or {}
        enacted = openaps.get("enacted") or {}
        iob = openaps.get("iob")
        if isinstance(iob, list):  # OpenAPS rigs send a list of IOB forecasts; the first is now
            iob = iob[0] if iob else {}
        pred = suggested.get("predBGs") if isinstance(suggested, dict) else None
        curve = None
        if isinstance(pred, dict):  # the curve the algorithm acted on: COB, else UAM, else IOB
            curve = next((pred[k] for k in ("COB", "UAM", "IOB", "ZT") if pred.get(k)), None)
        row |= {
            "loop_system": "openaps",
            "iob_units": _nested_number(iob, "iob"),
            "basal_iob_units": _nested_number(iob, "basaliob"),
            "cob_grams": _nested_number(suggested, "COB"),
            "eventual_bg_mg_dl": _nested_number(suggested, "eventualBG"),
            "predicted_mg_dl": _prediction(curve),
            "predicted_start_at": _safe_us(
                suggested.get("timestamp") if isinstance(suggested, dict) else None
            ),
            "enacted_rate_units_per_hour": _nested_number(enacted, "rate"),
            "enacted_duration_minutes": _nested_number(enacted, "duration"),
        }
    return row


def _profile_fields(doc: dict[str, Any]) -> dict[str, Any]:
    store_value = doc.get("store")
    store: dict[str, Any] = store_value if isinstance(store_value, dict) else {}
    name = doc.get("defaultProfile")
    active = store.get(name) if isinstance(name, str) else None
    active = active if isinstance(active, dict) else {}
    return {
        "default_profile": _text(name),
        "units": _text(doc.get("units") or active.get("units")),
        "timezone": _text(active.get("timezone")),
        "dia_hours": _nested_number(active, "dia"),
        "store": dumps(store) if store else None,
    }


def _safe_us(value: Any) -> int | None:
    try:
        ms = _ms_from_any(value)
    except Rejected:
        return None
    return None if ms is None else ms * 1000


_SPECIFIC = {
    "entries": _entry_fields,
    "treatments": _treatment_fields,
    "devicestatus": _devicestatus_fields,
    "profile": _profile_fields,
}


def source_id(doc: dict[str, Any]) -> str | None:
    value = doc.get("identifier") or doc.get("_id")
    if isinstance(value, dict):  # extended JSON: {"$oid": "..."}
        value = value.get("$oid")
    return str(value) if value else None


def _safe_source_id(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    sid = source_id(doc)
    # an id with a lone surrogate cannot be stored as it is: keep it escaped
    return None if sid is None else sid.encode("utf-8", "backslashreplace").decode()


def dumps(doc: Any) -> str:
    """Compact JSON text of a document (orjson: this runs once per record, so speed matters)."""
    try:
        return orjson.dumps(doc).decode()
    except TypeError:  # integers beyond 64 bits, lone surrogates, other things orjson refuses
        try:  # ASCII escapes keep lone surrogates storable
            return json.dumps(doc, separators=(",", ":"), ensure_ascii=True)
        except (ValueError, RecursionError):  # nesting deeper than Python recurses
            # the page itself, byte for byte, stays in stage
            return '"<a document nested too deeply to keep here: see the stage>"'


def _server_time(doc: dict[str, Any], name: str) -> int | None:
    """Nightscout's own clock (v3 `srvCreated`/`srvModified`, epoch ms), when it is a time."""
    value = doc.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not (math.isfinite(value) and EARLIEST_PLAUSIBLE_MS <= value <= MAX_MS):
        raise Rejected(f"{name} {value!r} is not a server time")
    return int(value)


def _unicode_safe(row: dict[str, Any]) -> None:
    """Text must be valid Unicode to be stored: a lone surrogate (an escape like \\ud800 in the
    JSON) cannot be, so the document is rejected (its text is kept, escaped, in raw.rejects)."""
    for name, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise Rejected(f"{name} is not valid Unicode (a lone surrogate)") from None


def parse(collection: str, doc: Any, *, now_ms: int) -> dict[str, Any]:
    """One document as a row of `raw.<collection>`; raises `Rejected` with the reason."""
    if not isinstance(doc, dict):
        raise Rejected(f"document is a {type(doc).__name__}, not an object")
    sid = source_id(doc)
    if sid is None:
        raise Rejected("missing id (neither identifier nor _id)")
    ms = event_ms(collection, doc)
    if ms < EARLIEST_PLAUSIBLE_MS:
        raise Rejected(f"implausible event time {ms} ms (before 2000-01-01): broken clock")
    if ms > now_ms + FUTURE_TOLERANCE_MS:
        raise Rejected(f"event time {ms} ms is more than a day in the future: broken clock")
    offset = doc.get("utcOffset")
    if not isinstance(offset, int | float) or isinstance(offset, bool):
        offset = _offset_from_iso(
            doc.get("dateString") or doc.get("created_at") or doc.get("timestamp")
        )
    if offset is not None and not (math.isfinite(offset) and abs(offset) <= MAX_UTC_OFFSET_MINUTES):
        raise Rejected(f"utcOffset {offset!r} minutes is not a time zone offset")
    srv_created = _server_time(doc, "srvCreated")
    srv_modified = _server_time(doc, "srvModified")
    is_valid = doc.get("isValid")
    row = {
        "site_id": "",
        "source_id": sid,
        "event_at": ms * 1000,
        "utc_offset_minutes": None if offset is None else int(offset),
        "is_valid": is_valid is not False,
        "srv_created_at": None if srv_created is None else srv_created * 1000,
        "srv_modified_at": None if srv_modified is None else srv_modified * 1000,
        "device": _text(doc.get("device") or doc.get("app") or doc.get("enteredBy")),
        "document": dumps(doc),
    }
    row.update(_SPECIFIC[collection](doc))
    _unicode_safe(row)
    return row


@dataclass
class ParsedBatch:
    """Rows and rejects of one collection for one site, ready to become Arrow tables."""

    collection: str
    site_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)

    def add(self, docs: Iterable[Any], *, now_ms: int) -> None:
        for doc in docs:
            try:
                row = parse(self.collection, doc, now_ms=now_ms)
            except Rejected as why:
                self.rejects.append(self._reject(doc, str(why)))
                continue
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                # Whatever this version of Cascade did not foresee: one bad document must
                # never stop its site, so it is kept as a reject with what went wrong.
                reason = f"unreadable document ({type(exc).__name__}: {str(exc)[:80]})"
                self.rejects.append(self._reject(doc, reason))
                continue
            row["site_id"] = self.site_id
            self.rows.append(row)

    def _reject(self, doc: Any, reason: str) -> dict[str, Any]:
        text = dumps(doc)
        sid = _safe_source_id(doc)
        # One reject per version of a record, however it was read (v1 and v3 render it differently).
        identity = f"{sid}\x1f{doc.get('srvModified')}" if sid and isinstance(doc, dict) else text
        digest = hashlib.sha256(
            f"{self.site_id}\x1f{self.collection}\x1f{identity}".encode("utf-8", "backslashreplace")
        ).hexdigest()
        return {
            "reject_id": digest[:32],
            "site_id": self.site_id,
            "collection": self.collection,
            "source_id": sid,
            "reason": reason,
            "document": text,
        }

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejects)


def to_arrow(
    collection: str, rows: list[dict[str, Any]], *, ingested_at_us: int, load_id: str, api: str
) -> pa.Table:
    schema = raw_schema(collection).as_arrow()
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    metadata = {
        "_cascade_ingested_at": ingested_at_us,
        "_cascade_load_id": load_id,
        "_cascade_api": api,
    }
    for name, values in columns.items():
        if name in metadata:
            values.extend([metadata[name]] * len(rows))
        else:
            values.extend(row.get(name) for row in rows)
    return pa.Table.from_pydict(columns, schema=schema)


def rejects_to_arrow(
    rejects: list[dict[str, Any]], *, ingested_at_us: int, load_id: str
) -> pa.Table:
    schema = rejects_schema().as_arrow()
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for name, values in columns.items():
        if name == "_cascade_ingested_at":
            values.extend([ingested_at_us] * len(rejects))
        elif name == "_cascade_load_id":
            values.extend([load_id] * len(rejects))
        else:
            values.extend(r.get(name) for r in rejects)
    return pa.Table.from_pydict(columns, schema=schema)
