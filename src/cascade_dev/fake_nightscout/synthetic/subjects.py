"""The public API: one subject's documents for every collection, and scripted entries for tests."""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cascade_dev.fake_nightscout.synthetic.clock import (
    _floor_to_interval,
    _one_iso_local,
    _one_iso_utc,
    _timeline,
    _trip_for,
)
from cascade_dev.fake_nightscout.synthetic.dirty import _dirty_entries
from cascade_dev.fake_nightscout.synthetic.entries import (
    NOT_COMPUTABLE,
    _cgm_device,
    _meter_entries,
    _sgv_entries,
)
from cascade_dev.fake_nightscout.synthetic.loop import _devicestatus, _run_loop
from cascade_dev.fake_nightscout.synthetic.people import (
    MARKER_BOLUS_FRACTION,
    MS_PER_DAY,
    MS_PER_MINUTE,
    Doc,
    SubjectSpec,
    _stable_seed,
)
from cascade_dev.fake_nightscout.synthetic.physiology import _simulate
from cascade_dev.fake_nightscout.synthetic.profiles import _profile_doc, _profile_plans
from cascade_dev.fake_nightscout.synthetic.treatments import _treatments

# --------------------------------------------------------------------------- public API


def generate_subject(
    spec: SubjectSpec,
    *,
    days: int,
    interval_minutes: int = 5,
    seed: int = 0,
    end: datetime | None = None,
    dirty: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """One person's Nightscout documents for the window [end - days, end).

    ``end`` (default: now; naive means UTC) is rounded down to the CGM interval.
    Every list is in upload order (by event time; dirty extras follow the record
    they were derived from). Documents carry no server fields. The same
    arguments always give the same documents; ``seed`` picks another history for
    the same person. ``dirty`` adds the records listed in the module docstring
    and counted by :func:`dirty_record_counts`.
    """
    if interval_minutes not in (1, 5):
        raise ValueError("interval_minutes must be 1 or 5")
    if days < 1:
        raise ValueError("days must be >= 1")
    end_ms = _floor_to_interval(end if end is not None else datetime.now(UTC), interval_minutes)
    start_ms = end_ms - days * MS_PER_DAY
    base_seed = _stable_seed(spec, days, interval_minutes, seed, end_ms)

    trip = _trip_for(spec, start_ms, end_ms)
    tl = _timeline(spec, start_ms, end_ms, interval_minutes, trip)
    marker_index = tl.index_at_ms(start_ms + int(MARKER_BOLUS_FRACTION * (end_ms - start_ms)))
    sim = _simulate(spec, tl, base_seed, marker_index)
    plans = _profile_plans(spec, tl, trip, base_seed)
    lp = _run_loop(spec, tl, sim, plans, base_seed)

    device = _cgm_device(spec, interval_minutes)
    table = _sgv_entries(tl, sim, device, base_seed)
    entry_items: list[tuple[int, int, Doc]] = [(doc["date"], 0, doc) for doc in table.docs]
    entry_items += [(ms, 0, doc) for ms, doc in _meter_entries(tl, sim, device, base_seed)]
    treatment_items, marker = _treatments(spec, tl, sim, lp, plans, trip, base_seed)
    devicestatus = _devicestatus(spec, lp)
    profiles = [_profile_doc(spec, plan) for plan in plans]

    if dirty:
        entry_items += _dirty_entries(table, tl, device, days)
        marker["insulin"] = str(marker["insulin"])
        half = start_ms + (end_ms - start_ms) // 2
        treatment_items.append(
            (
                half,
                {
                    "eventType": "Note",
                    "created_at": "not a date",
                    "enteredBy": "careportal",
                    "utcOffset": tl.offsets.at_one(half),
                    "notes": "entered on a phone with a broken date picker",
                },
            )
        )
        treatment_items.sort(key=lambda item: item[0])
        pos = min(int(np.searchsorted(lp.ms, half)), len(devicestatus) - 1)
        stale = _reset_clock(devicestatus[pos])
        devicestatus.insert(pos + 1, stale)

    entry_items.sort(key=lambda item: (item[0], item[1]))
    return {
        "entries": [doc for _, _, doc in entry_items],
        "treatments": [doc for _, doc in treatment_items],
        "devicestatus": devicestatus,
        "profile": profiles,
    }


def _reset_clock(doc: Doc) -> Doc:
    """A copy of a devicestatus whose phone and pump clocks reset to January 1970."""
    ms = int(np.datetime64(doc["created_at"].rstrip("Z"), "ms").astype(np.int64))
    stamp = _one_iso_utc(ms % MS_PER_DAY)
    copy: Doc = deepcopy(doc)
    copy["created_at"] = stamp
    copy["pump"]["clock"] = stamp
    return copy


def scripted_entries(
    values_mg_dl: Sequence[int | None],
    *,
    start: datetime,
    interval_minutes: int = 5,
    utc_offset_minutes: int = 0,
    device: str = "scripted",
) -> list[dict[str, Any]]:
    """One sgv entry per value, ``interval_minutes`` apart from ``start`` (None = gap).

    For known-answer tests: no noise, no clamping, no dirt. ``delta`` (per 5
    minutes, as uploaders report it) and ``direction`` come from the reading 5
    minutes earlier (one slot at a 5-min interval); without one the reading is
    "NOT COMPUTABLE" with no ``delta``, as a real uploader reports it after a gap.
    """
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    step = interval_minutes * MS_PER_MINUTE
    lag = max(1, 5 // interval_minutes)
    out: list[dict[str, Any]] = []
    for i, value in enumerate(values_mg_dl):
        if value is None:
            continue
        ms = start_ms + i * step
        doc: dict[str, Any] = {
            "type": "sgv",
            "sgv": int(value),
            "date": ms,
            "dateString": _one_iso_local(ms, utc_offset_minutes),
            "utcOffset": utc_offset_minutes,
            "direction": NOT_COMPUTABLE,
            "device": device,
            "noise": 1,
        }
        prev = values_mg_dl[i - lag] if i >= lag else None
        if prev is not None:
            delta = (int(value) - int(prev)) * 5 / (lag * interval_minutes)
            doc["delta"] = float(delta)
            doc["direction"] = _direction(delta / 5.0)
        out.append(doc)
    return out


def _direction(slope_per_minute: float) -> str:
    """Nightscout/Dexcom trend arrow for a slope in mg/dL per minute."""
    s = slope_per_minute
    if s > 3:
        return "DoubleUp"
    if s > 2:
        return "SingleUp"
    if s > 1:
        return "FortyFiveUp"
    if s >= -1:
        return "Flat"
    if s >= -2:
        return "FortyFiveDown"
    if s >= -3:
        return "SingleDown"
    return "DoubleDown"
