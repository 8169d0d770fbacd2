"""glycemic_events is incremental: events spanning midnight, and only recent events recomputed.

One subject, 5-minute readings at 120 mg/dL with a daily 30-minute hyper at local noon and a
one-hour hypo (60 mg/dL) across the midnight between day 5 and day 6. The first load stops in
the middle of that hypo; the second brings the rest. The incremental result must equal a full
refresh, and a later one-reading load must recompute only the events after the safe cut.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings
from cascade.transform import transform

from .rawdata import DocFactory, ms, write_raw

pytestmark = pytest.mark.integration

SITE = "e"
FIRST_DAY = date(2026, 4, 1)
DAYS = 8
OFFSET = 60  # local = UTC + 1 h
SPLIT = (5, 287)  # (day, position): the first load ends before this reading (local 23:55)
MARKER = -1


def local_at(day: int, position: int) -> datetime:
    return datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time()) + timedelta(
        minutes=5 * position
    )


def at_ms(day: int, position: int) -> int:
    return ms(local_at(day, position).replace(tzinfo=UTC) - timedelta(minutes=OFFSET))


def value(day: int, position: int) -> int:
    if 144 <= position < 150:  # 12:00-12:25 local: 30 minutes > 250
        return 300
    if (day == 5 and position >= 282) or (day == 6 and position < 6):  # 23:30-00:25 local
        return 60
    return 120


def events(catalog: Catalog) -> list[dict[str, Any]]:
    rows = catalog.load_table("gold.glycemic_events").scan().to_arrow().to_pylist()
    return sorted(rows, key=lambda r: (r["started_at"], r["event_type"]))


@pytest.fixture(scope="module")
def runs(module_lake: tuple[Settings, Catalog]) -> dict[str, Any]:
    settings, catalog = module_lake
    docs = DocFactory(prefix=5)
    readings = [
        ((d, p), docs.sgv(at_ms(d, p), value(d, p), offset=OFFSET))
        for d in range(DAYS)
        for p in range(288)
    ]
    first = [doc for key, doc in readings if key < SPLIT]
    rest = [doc for key, doc in readings if key >= SPLIT]
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    out: dict[str, Any] = {}
    write_raw(catalog, "entries", SITE, first, ingested_at=t0)
    transform(settings)
    out["partial"] = events(catalog)
    write_raw(catalog, "entries", SITE, rest, ingested_at=t0 + timedelta(hours=1))
    out["incremental"] = transform(settings)
    out["incremental_events"] = events(catalog)
    out["full_refresh"] = transform(settings, full_refresh=True)
    out["full_refresh_events"] = events(catalog)

    # probe: stamp every event in the working copy, load one more reading on the last day
    working_copy = settings.lake.home / "transform.duckdb"
    con = duckdb.connect(str(working_copy))
    try:
        con.execute(f"UPDATE gold.glycemic_events SET reading_count = {MARKER}")
    finally:
        con.close()
    write_raw(
        catalog,
        "entries",
        SITE,
        [docs.sgv(at_ms(DAYS - 1, 200) + 60_000, 121, offset=OFFSET)],
        ingested_at=t0 + timedelta(hours=2),
    )
    transform(settings)
    con = duckdb.connect(str(working_copy), read_only=True)
    try:
        out["probe"] = con.execute(
            "SELECT local_date, event_type, reading_count FROM gold.glycemic_events"
        ).fetchall()
    finally:
        con.close()
    return out


def test_an_event_across_midnight_is_completed_by_the_next_load(runs: dict[str, Any]) -> None:
    hypo_day = FIRST_DAY + timedelta(days=5)
    (before,) = [
        e
        for e in runs["partial"]
        if e["event_type"] == "hypo_level_1" and e["local_date"] == hypo_day
    ]
    assert not before["is_recovered"]  # the data ended inside it
    (after,) = [
        e
        for e in runs["incremental_events"]
        if e["event_type"] == "hypo_level_1" and e["local_date"] == hypo_day
    ]
    assert after["is_recovered"]
    assert after["duration_minutes"] == 60.0
    assert after["reading_count"] == 12
    assert after["local_started_at"] == local_at(5, 282)
    assert after["ended_at"] == datetime.fromtimestamp(at_ms(6, 6) / 1000, UTC)
    assert len([e for e in runs["incremental_events"] if e["event_type"] == "hyper"]) == DAYS


def test_incremental_events_equal_a_full_refresh(runs: dict[str, Any]) -> None:
    assert runs["incremental_events"] == runs["full_refresh_events"]
    assert not runs["full_refresh"].committed, [
        t.identifier for t in runs["full_refresh"].committed
    ]


def test_only_events_after_the_safe_cut_are_recomputed(runs: dict[str, Any]) -> None:
    probe = runs["probe"]
    assert probe
    last_day = FIRST_DAY + timedelta(days=DAYS - 1)
    # the cut lies in the two days before 00:00 UTC two days before the touched day
    kept = [r for r in probe if r[0] <= last_day - timedelta(days=4)]
    rebuilt = [r for r in probe if r[0] >= last_day - timedelta(days=2)]
    assert kept and all(r[2] == MARKER for r in kept)
    assert rebuilt and all(r[2] != MARKER for r in rebuilt)


def test_partial_write_back_of_day_keyed_tables(runs: dict[str, Any]) -> None:
    writes = {t.identifier: t for t in runs["incremental"].committed}
    for identifier in (
        "silver.fct_glucose_readings",
        "gold.agp_percentiles",
        "gold.glucose_metrics_14d",
    ):
        assert writes[identifier].partial, identifier
        assert writes[identifier].replaced_rows < writes[identifier].rows, identifier
