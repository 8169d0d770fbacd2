"""Properties of re-runs: idempotent (no new snapshot), late and edited data touch exactly their
days, and the incremental result equals a full refresh and a rebuild from an empty working copy.

One lake goes through a sequence of loads; each step's lake state is recorded once and the tests
compare states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings
from cascade.transform import TransformResult, transform

from .rawdata import DocFactory, ms, write_raw

pytestmark = pytest.mark.integration

SITE = "p"
FIRST_DAY = date(2026, 2, 1)
DAYS = 20
OFFSET = 60
LATE = (4, 50)  # (day, position) of the reading that arrives late
DELETED = (10, 120)
MOVED_FROM, MOVED_TO = (12, 200), (15, 150)  # moved to 2 minutes after this grid point
EDITED = (8, 30)
DUPLICATED = (16, 60)
PROBE = (2, 10)


def value(day: int, position: int) -> int:
    wave = (
        150 + 75 * math.sin(2 * math.pi * position / 288 + day) + 25 * math.sin(position / 7 + day)
    )
    return max(40, min(400, round(wave)))


def at(day: int, position: int) -> int:
    local = datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), UTC)
    return ms(local + timedelta(minutes=5 * position - OFFSET))


def day_of(day: int) -> date:
    return FIRST_DAY + timedelta(days=day)


@dataclass
class Step:
    result: TransformResult
    state: dict[str, dict[str, Any]]


@dataclass
class History:
    steps: dict[str, Step]
    takeover_source_id: str
    unmarked_days: set[date]
    unmarked_readings: int


MARKER = -1


def mark_working_copy(database: Path) -> None:
    """Stamp every incremental row in the working copy; a row an incremental run rebuilds loses it."""
    con = duckdb.connect(str(database))
    try:
        con.execute(f"UPDATE gold.glucose_metrics_daily SET min_glucose_mg_dl = {MARKER}")
        con.execute(f"UPDATE silver.fct_glucose_readings SET noise_level = {MARKER}")
    finally:
        con.close()


def unmarked(database: Path) -> tuple[set[date], int]:
    con = duckdb.connect(str(database), read_only=True)
    try:
        days = con.execute(
            f"SELECT local_date FROM gold.glucose_metrics_daily WHERE min_glucose_mg_dl <> {MARKER}"
        ).fetchall()
        (readings,) = con.execute(
            f"SELECT count(*) FROM silver.fct_glucose_readings WHERE noise_level IS DISTINCT FROM {MARKER}"
        ).fetchone() or (0,)
    finally:
        con.close()
    return {d for (d,) in days}, int(readings)


def moved_ms() -> int:
    return at(*MOVED_TO) + 120_000


def lake_state(catalog: Catalog) -> dict[str, dict[str, Any]]:
    state = {}
    for layer in ("silver", "gold", "marts"):
        for identifier in catalog.list_tables(layer):
            table = catalog.load_table(identifier)
            snapshot = table.current_snapshot()
            rows = table.scan().to_arrow().to_pylist()
            state[".".join(identifier)] = {
                "snapshot": snapshot.snapshot_id if snapshot else None,
                "snapshots": len(table.snapshots()),
                "rows": sorted(rows, key=repr),
            }
    return state


def by_key(rows: list[dict[str, Any]], *key: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in key): r for r in rows}


def changed_keys(before: dict[str, Any], after: dict[str, Any], *key: str) -> set[tuple[Any, ...]]:
    old, new = by_key(before["rows"], *key), by_key(after["rows"], *key)
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


@pytest.fixture(scope="module")
def history(module_lake: tuple[Settings, Catalog]) -> History:
    settings, catalog = module_lake
    docs = DocFactory(prefix=3)
    entries = {
        (day, position): docs.sgv(at(day, position), value(day, position))
        for day in range(DAYS)
        for position in range(288)
    }
    late = entries.pop(LATE)
    copy = docs.sgv(at(*DUPLICATED), value(*DUPLICATED), device="second-uploader")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    write_raw(catalog, "entries", SITE, [*entries.values(), copy], ingested_at=t0)
    treatments = [
        docs.treatment(at(d, 96), "Meal Bolus", insulin=3.0, carbs=30) for d in range(DAYS)
    ]
    write_raw(catalog, "treatments", SITE, treatments, ingested_at=t0)

    steps: dict[str, Step] = {}

    def run(name: str, **kwargs: Any) -> None:
        steps[name] = Step(transform(settings, **kwargs), lake_state(catalog))

    run("initial")
    run("again")
    write_raw(catalog, "entries", SITE, [late], ingested_at=t0 + timedelta(days=1))
    run("late")
    modified = docs.server_ms + 10_000
    kept, other = sorted([entries[DUPLICATED], copy], key=lambda d: d["identifier"])
    changes = [
        docs.tombstone(entries[DELETED], modified_ms=modified),
        dict(
            entries[MOVED_FROM],
            date=moved_ms(),
            srvModified=modified,
            dateString=datetime.fromtimestamp(moved_ms() / 1000, UTC).isoformat(),
        ),
        dict(entries[EDITED], sgv=value(*EDITED) + 7, srvModified=modified),
        docs.tombstone(kept, modified_ms=modified),
    ]
    write_raw(catalog, "entries", SITE, changes, ingested_at=t0 + timedelta(days=2))
    run("edited")
    run("full_refresh", full_refresh=True)
    working_copy = settings.lake.home / "transform.duckdb"
    working_copy.unlink()  # the working copy is disposable
    run("rebuilt")

    # a probe of what an incremental run recomputes: mark all rows, load one late reading
    mark_working_copy(working_copy)
    write_raw(
        catalog,
        "entries",
        SITE,
        [docs.sgv(at(*PROBE) + 60_000, 111)],
        ingested_at=t0 + timedelta(days=3),
    )
    transform(settings)
    days, readings = unmarked(working_copy)
    return History(steps, other["identifier"], days, readings)


def test_a_rerun_without_new_data_changes_nothing(history: History) -> None:
    again = history.steps["again"]
    assert again.result.tables and not again.result.committed
    assert again.state == history.steps["initial"].state  # same snapshot ids and counts, same rows


def test_a_late_reading_changes_exactly_its_day_and_the_windows_holding_it(
    history: History,
) -> None:
    before, after = history.steps["again"].state, history.steps["late"].state
    late_day = day_of(LATE[0])
    daily = changed_keys(
        before["gold.glucose_metrics_daily"],
        after["gold.glucose_metrics_daily"],
        "site_id",
        "local_date",
    )
    assert daily == {(SITE, late_day)}
    windows = changed_keys(
        before["gold.glucose_metrics_14d"],
        after["gold.glucose_metrics_14d"],
        "site_id",
        "window_end_date",
    )
    last_day = day_of(DAYS - 1)
    expected = {
        (SITE, late_day + timedelta(days=k))
        for k in range(14)
        if late_day + timedelta(days=k) <= last_day
    }
    assert windows == expected
    (day_row,) = [
        r for r in after["gold.glucose_metrics_daily"]["rows"] if r["local_date"] == late_day
    ]
    assert day_row["reading_count"] == 288
    assert not history.steps["late"].result.full_refresh
    assert (
        after["silver.fct_glucose_readings"]["snapshot"]
        != before["silver.fct_glucose_readings"]["snapshot"]
    )
    # a table whose content did not change got no commit
    assert after["silver.dim_date"]["snapshot"] == before["silver.dim_date"]["snapshot"]


def test_deletions_edits_moves_and_takeovers_touch_exactly_their_days(history: History) -> None:
    before, after = history.steps["late"].state, history.steps["edited"].state
    daily = changed_keys(
        before["gold.glucose_metrics_daily"],
        after["gold.glucose_metrics_daily"],
        "site_id",
        "local_date",
    )
    # the deleted duplicate's copy takes over: same value and instant, so its day's metrics stay
    assert daily == {(SITE, day_of(d)) for d in (DELETED[0], MOVED_FROM[0], MOVED_TO[0], EDITED[0])}
    readings = after["silver.fct_glucose_readings"]["rows"]
    assert not [
        r for r in readings if r["event_at"] == datetime.fromtimestamp(at(*DELETED) / 1000, UTC)
    ]
    moved = [r for r in readings if r["event_at"] == datetime.fromtimestamp(moved_ms() / 1000, UTC)]
    assert [r["local_date"] for r in moved] == [day_of(MOVED_TO[0])]
    assert not [
        r for r in readings if r["event_at"] == datetime.fromtimestamp(at(*MOVED_FROM) / 1000, UTC)
    ]
    (edited,) = [
        r for r in readings if r["event_at"] == datetime.fromtimestamp(at(*EDITED) / 1000, UTC)
    ]
    assert edited["glucose_mg_dl"] == value(*EDITED) + 7
    (taken_over,) = [
        r for r in readings if r["event_at"] == datetime.fromtimestamp(at(*DUPLICATED) / 1000, UTC)
    ]
    assert taken_over["source_id"] == history.takeover_source_id
    assert taken_over["uploader_copy_count"] == 1


def test_an_incremental_run_recomputes_only_the_touched_day_and_reading(history: History) -> None:
    assert history.unmarked_days == {day_of(PROBE[0])}
    assert history.unmarked_readings == 1


def test_incremental_equals_full_refresh_and_a_rebuild_from_scratch(history: History) -> None:
    edited = history.steps["edited"].state
    for name in ("full_refresh", "rebuilt"):
        step = history.steps[name]
        assert not step.result.committed, [t.identifier for t in step.result.committed]
        assert step.state == edited, name
    assert history.steps["full_refresh"].result.full_refresh
