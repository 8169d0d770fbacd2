"""The broken records real sites hold (duplicates, bad clocks, wrong types), and how many."""

from __future__ import annotations

import numpy as np

from cascade_dev.fake_nightscout.synthetic.clock import _one_iso_local, _Timeline
from cascade_dev.fake_nightscout.synthetic.entries import (
    NOT_COMPUTABLE,
    _EntryTable,
    _second_uploader,
)
from cascade_dev.fake_nightscout.synthetic.people import (
    DUPLICATE_PERMILLE,
    DUPLICATE_START_FRACTION,
    FUTURE_CLOCK_DAYS,
    MINUTES_PER_DAY,
    MS_PER_DAY,
    NUMERIC_STRING_FRACTIONS,
    Doc,
)

# --------------------------------------------------------------------------- dirty data


def _nominal_readings(days: int, interval_minutes: int) -> int:
    return days * MINUTES_PER_DAY // interval_minutes


def dirty_record_counts(days: int, interval_minutes: int = 5) -> dict[str, int]:
    """Exactly what ``generate_subject(..., dirty=True)`` adds or changes.

    ``rejectable_<collection>`` counts the extra records an ingester must reject
    (see the module docstring for the rule); duplicates and numeric strings are
    not rejectable (dedup and coercion handle them).
    """
    duplicates = max(1, _nominal_readings(days, interval_minutes) * DUPLICATE_PERMILLE // 1000)
    return {
        "entries_duplicates": duplicates,
        "entries_sgv_numeric_string": len(NUMERIC_STRING_FRACTIONS),
        "entries_date_1970": 1,
        "entries_date_future": 1,
        "entries_sgv_unparseable": 1,
        "entries_missing_date": 1,
        "treatments_created_at_unparseable": 1,
        "treatments_insulin_numeric_string": 1,
        "devicestatus_date_1970": 1,
        "rejectable_entries": 4,
        "rejectable_treatments": 1,
        "rejectable_devicestatus": 1,
        "rejectable_profile": 0,
        "extra_entries": duplicates + 4,
        "extra_treatments": 1,
        "extra_devicestatus": 1,
        "extra_profile": 0,
    }


def _pick(table: _EntryTable, tl: _Timeline, fraction: float, *, normal: bool) -> int:
    """Position of the first (normal-valued) sgv reading at or after ``fraction`` of the window."""
    ms = tl.t_ms[table.index]
    pos = int(np.searchsorted(ms, tl.start_ms + int(fraction * (tl.end_ms - tl.start_ms))))
    if normal:
        while pos < len(table.docs) and (table.is_code[pos] or not 40 <= table.value[pos] <= 400):
            pos += 1
    return min(pos, len(table.docs) - 1)


def _dirty_entries(
    table: _EntryTable, tl: _Timeline, device: str, days: int
) -> list[tuple[int, int, Doc]]:
    counts = dirty_record_counts(days, tl.step_min)
    docs = table.docs
    extras: list[tuple[int, int, Doc]] = []

    n_dup = counts["entries_duplicates"]
    first = min(_pick(table, tl, DUPLICATE_START_FRACTION, normal=False), len(docs) - n_dup)
    second = _second_uploader(device)
    for doc in docs[first : first + n_dup]:
        copy = {key: value for key, value in doc.items() if key != "trend"}
        copy["device"] = second
        extras.append((doc["date"], 1, copy))

    for fraction in NUMERIC_STRING_FRACTIONS:
        doc = docs[_pick(table, tl, fraction, normal=True)]
        doc["sgv"] = str(doc["sgv"])

    base = docs[_pick(table, tl, 0.5, normal=True)]
    old = dict(base, date=base["date"] % (30 * MS_PER_DAY))
    old["dateString"] = _one_iso_local(old["date"], old["utcOffset"])
    extras.append((base["date"], 2, old))

    base = docs[_pick(table, tl, 0.6, normal=True)]
    future = dict(
        base,
        date=tl.end_ms + FUTURE_CLOCK_DAYS * MS_PER_DAY + (base["date"] - tl.start_ms) % MS_PER_DAY,
    )
    future["dateString"] = _one_iso_local(future["date"], future["utcOffset"])
    extras.append((base["date"], 2, future))

    base = docs[_pick(table, tl, 0.7, normal=True)]
    broken = {key: value for key, value in base.items() if key not in ("delta", "trend")}
    broken.update(sgv="abc", direction=NOT_COMPUTABLE, date=base["date"] + 30_000)
    broken["dateString"] = _one_iso_local(broken["date"], broken["utcOffset"])
    extras.append((base["date"], 2, broken))

    base = docs[_pick(table, tl, 0.8, normal=True)]
    undated = {key: value for key, value in base.items() if key not in ("date", "dateString")}
    extras.append((base["date"], 2, undated))
    return extras
