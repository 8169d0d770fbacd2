"""Known answers: a scripted 14-day trace through `transform()`, read back from the Iceberg tables.

The trace sits at exactly 72.5 % in range (203 of 280 readings every day). Every expected number
is computed here from the published formulas (docs/TRANSFORM.md, Metrics), never from the models.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings
from cascade.transform import TransformResult, transform

from .rawdata import DocFactory, ms, write_raw

pytestmark = pytest.mark.integration

MG_DL_PER_MMOL_L = 18.0182
SITE = "known"
TRAVELER = "traveler"
FIRST_DAY = date(2026, 1, 5)
DAYS = 14
OFFSET = 60  # Europe/Berlin in winter
GAP = range(100, 108)  # 8 missing readings a day: 280 of 288
# positions 20..31: 60 minutes below 70, of which 15 minutes below 54
HYPO = [65, 62, 60, 58, 55, 52, 50, 51, 56, 60, 66, 69]
# positions 150..166: 85 minutes above 250, with one HIGH clamp (401)
HYPER = [260, 270, 280, 290, 300, 310, 320, 330, 401, 330, 320, 310, 300, 290, 280, 270, 260]
INGESTED = datetime(2026, 1, 20, tzinfo=UTC)


def value_at(day: int, position: int) -> int | None:
    """The trace: glucose of local day `day` at local time position x 5 min (None: no reading)."""
    if position in GAP:
        return None
    if 20 <= position < 32:
        return HYPO[position - 20]
    if 150 <= position < 167:
        return HYPER[position - 150]
    if 167 <= position < 215:
        return 190 + (position * 11 + day * 5) % 56  # 181-250
    return 70 + (position * 7 + day * 3) % 111  # 70-180 inclusive


def trace() -> list[tuple[int, int, int]]:
    return [
        (day, position, value)
        for day in range(DAYS)
        for position in range(288)
        if (value := value_at(day, position)) is not None
    ]


def utc_ms(day: int, position: int, offset: int = OFFSET) -> int:
    local = datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), UTC)
    return ms(local + timedelta(minutes=5 * position - offset))


# --- the formulas, independently ------------------------------------------------------------


def risk_f(bg: float) -> float:
    return 1.509 * (math.log(bg) ** 1.084 - 5.381)


def expected_metrics(values: list[int]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    sd = statistics.stdev(values)  # sample SD (n - 1), as iglu

    def pct(count: int) -> float:
        return 100 * count / n

    vlow = pct(sum(v < 54 for v in values))
    low = pct(sum(54 <= v <= 69 for v in values))
    high = pct(sum(181 <= v <= 250 for v in values))
    vhigh = pct(sum(v > 250 for v in values))
    gri = min(100.0, 3.0 * (vlow + 0.8 * low) + 1.6 * (vhigh + 0.5 * high))
    return {
        "reading_count": n,
        "mean_glucose_mg_dl": mean,
        "mean_glucose_mmol_l": mean / MG_DL_PER_MMOL_L,
        "sd_glucose_mg_dl": sd,
        "cv_pct": 100 * sd / mean,
        "gmi_pct": 3.31 + 0.02392 * mean,
        "gmi_mmol_mol": 12.71 + 4.70587 * mean / MG_DL_PER_MMOL_L,
        "tir_pct": pct(sum(70 <= v <= 180 for v in values)),
        "titr_pct": pct(sum(70 <= v <= 140 for v in values)),
        "tbr_level_1_pct": low,
        "tbr_level_2_pct": vlow,
        "tar_level_1_pct": high,
        "tar_level_2_pct": vhigh,
        "gri": gri,
        "gri_zone": "ABCDE"[sum(gri > bound for bound in (20, 40, 60, 80))],
        "lbgi": sum(10 * risk_f(v) ** 2 for v in values if risk_f(v) < 0) / n,
        "hbgi": sum(10 * risk_f(v) ** 2 for v in values if risk_f(v) > 0) / n,
    }


def percentile_type7(values: list[int], p: float) -> float:
    ordered = sorted(values)
    h = 1 + (len(ordered) - 1) * p
    low = math.floor(h)
    high = min(low + 1, len(ordered))
    return ordered[low - 1] + (h - low) * (ordered[high - 1] - ordered[low - 1])


def assert_metrics(row: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        if isinstance(value, float):
            assert row[name] == pytest.approx(value, abs=1e-3), name
        else:
            assert row[name] == value, name


# --- the lake ------------------------------------------------------------------------------------


def load_known(catalog: Catalog) -> None:
    docs = DocFactory(prefix=1)
    entries = [docs.sgv(utc_ms(day, position), value) for day, position, value in trace()]
    # a second uploader sends 10 readings of day 4 again: same instant and value, other id/device
    entries += [
        docs.sgv(utc_ms(4, position), value_at(4, position) or 0, device="dexcom-share")
        for position in range(200, 210)
    ]
    entries.append(docs.sgv(utc_ms(2, 103), 10))  # a sensor error code: counted, not glucose
    entries.append(docs.sgv(utc_ms(6, 104), 45, isValid=False))  # deleted at the source
    write_raw(catalog, "entries", SITE, entries, ingested_at=INGESTED)

    treatments = []
    for day in range(DAYS):
        treatments.append(docs.treatment(utc_ms(day, 96), "Meal Bolus", insulin=4.0, carbs=45))
        treatments.append(docs.treatment(utc_ms(day, 180), "Correction Bolus", insulin=1.5))
        treatments.append(
            docs.treatment(utc_ms(day, 36), "Temp Basal", rate=1.2, absolute=1.2, duration=30)
        )
    treatments.append(
        docs.treatment(utc_ms(1, 96), "Meal Bolus", insulin=4.0, carbs=45, enteredBy="xdrip")
    )
    write_raw(catalog, "treatments", SITE, treatments, ingested_at=INGESTED)
    statuses = [docs.device_status(utc_ms(0, p), iob=1.0 + p / 10, cob=10.0) for p in (0, 1, 2)]
    write_raw(catalog, "devicestatus", SITE, statuses, ingested_at=INGESTED)
    write_raw(
        catalog,
        "profile",
        SITE,
        [docs.profile(utc_ms(0, 0), "Europe/Berlin")],
        ingested_at=INGESTED,
    )


TRAVEL_START = datetime(2025, 12, 1, tzinfo=UTC)  # a Monday
TRAVEL_SWITCH = datetime(2025, 12, 4, tzinfo=UTC)  # flies Berlin (+60) -> New York (-300)


def load_traveler(catalog: Catalog) -> None:
    """Every reading's value encodes its true local hour: 100 + hour."""
    docs = DocFactory(prefix=2)
    entries = []
    moment = TRAVEL_START
    while moment < TRAVEL_START + timedelta(days=6):
        offset = 60 if moment < TRAVEL_SWITCH else -300
        local_hour = (moment + timedelta(minutes=offset)).hour
        entries.append(docs.sgv(ms(moment), 100 + local_hour, offset=offset))
        moment += timedelta(minutes=5)
    write_raw(catalog, "entries", TRAVELER, entries, ingested_at=INGESTED)


@pytest.fixture(scope="module")
def built(module_lake: tuple[Settings, Catalog]) -> TransformResult:
    settings, catalog = module_lake
    load_known(catalog)
    load_traveler(catalog)
    return transform(settings, unit_tests=True)


# --- tests ---------------------------------------------------------------------------------------


def test_build_runs_every_model_and_test_and_writes_silver_gold_marts(
    built: TransformResult,
) -> None:
    assert {n.status for n in built.nodes} <= {"success", "pass"}
    assert any(n.resource_type == "unit_test" for n in built.nodes)
    written = {t.identifier for t in built.tables}
    assert {
        "silver.fct_glucose_readings",
        "silver.fct_treatments",
        "silver.fct_device_status",
        "silver.dim_subject",
        "silver.dim_date",
        "gold.glucose_metrics_daily",
        "gold.glucose_metrics_14d",
        "gold.glycemic_events",
        "gold.agp_percentiles",
        "marts.mrt_glucose_overview",
        "marts.mrt_glucose_hourly_patterns",
        "marts.mrt_time_in_range",
        "marts.mrt_agp",
        "marts.mrt_daily_summary",
    } == written
    assert all(t.committed for t in built.tables)
    assert not any(t.identifier.startswith("bronze.") for t in built.tables)


def test_fourteen_day_metrics_match_the_formulas(
    built: TransformResult, read_rows: Callable[..., Any]
) -> None:
    values = [v for _, _, v in trace()]
    expected = expected_metrics(values)
    assert expected["tir_pct"] == 72.5  # the trace is built for it: 203 of 280 readings a day
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    (window,) = read_rows("gold.glucose_metrics_14d", site_id=SITE, window_end_date=last)
    assert window["window_start_date"] == FIRST_DAY
    assert window["days_with_readings"] == DAYS
    assert window["expected_reading_count"] == DAYS * 288
    assert window["cgm_active_pct"] == pytest.approx(100 * 3920 / 4032, abs=1e-3)
    assert window["has_sufficient_data"] is True
    assert window["sensor_error_count"] == 1
    assert_metrics(window, expected)


def test_daily_metrics_and_duplicates_errors_and_deletions(
    built: TransformResult, read_rows: Callable[..., Any]
) -> None:
    days = {r["local_date"]: r for r in read_rows("gold.glucose_metrics_daily", site_id=SITE)}
    assert sorted(days) == [FIRST_DAY + timedelta(days=d) for d in range(DAYS)]
    for day in range(DAYS):
        row = days[FIRST_DAY + timedelta(days=day)]
        values = [value_at(day, p) for p in range(288) if value_at(day, p) is not None]
        assert_metrics(row, expected_metrics(values))  # day 4 counts its duplicates once, day 6
        assert row["expected_reading_count"] == 288  # ignores the deleted reading
        assert row["high_clamp_count"] == 1
    assert days[FIRST_DAY + timedelta(days=2)]["sensor_error_count"] == 1
    duplicated = read_rows(
        "silver.fct_glucose_readings", site_id=SITE, local_date=FIRST_DAY + timedelta(days=4)
    )
    assert len(duplicated) == 280
    assert sum(r["uploader_copy_count"] == 2 for r in duplicated) == 10
    readings = read_rows("silver.fct_glucose_readings", site_id=SITE)
    assert len(readings) == 3920 + 1  # plus the error code row
    assert not [r for r in readings if r["glucose_mg_dl"] == 45]  # the deleted one


def test_events(built: TransformResult, read_rows: Callable[..., Any]) -> None:
    events = read_rows("gold.glycemic_events", site_id=SITE)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["event_type"], []).append(event)
    assert {k: len(v) for k, v in by_type.items()} == {
        "hypo_level_1": DAYS,
        "hypo_level_2": DAYS,
        "hyper": DAYS,
    }
    first = min(by_type["hypo_level_1"], key=lambda e: e["started_at"])
    assert first["started_at"] == datetime.fromtimestamp(utc_ms(0, 20) / 1000, UTC)
    assert first["duration_minutes"] == 60.0 and first["extreme_glucose_mg_dl"] == 50
    assert {e["duration_minutes"] for e in by_type["hypo_level_2"]} == {15.0}
    assert {e["duration_minutes"] for e in by_type["hyper"]} == {85.0}
    assert {e["extreme_glucose_mg_dl"] for e in by_type["hyper"]} == {401}
    assert all(e["is_recovered"] for e in events)


def test_agp_percentiles_of_the_latest_window(
    built: TransformResult, read_rows: Callable[..., Any]
) -> None:
    bins = {r["time_bin"]: r for r in read_rows("marts.mrt_agp", site_id=SITE)}
    assert set(bins) == set(range(96)) - {34, 35}  # the daily 45-minute gap: no interpolation
    for time_bin in (0, 7, 10, 33, 50, 60, 95):
        values = [v for _, p, v in trace() if p // 3 == time_bin]
        row = bins[time_bin]
        assert row["reading_count"] == len(values)
        for p, column in ((0.05, "p05"), (0.25, "p25"), (0.5, "p50"), (0.75, "p75"), (0.95, "p95")):
            assert row[f"{column}_glucose_mg_dl"] == pytest.approx(
                percentile_type7(values, p), abs=1e-9
            )
    assert bins[7]["bin_label"] == "01:45"


def test_overview_flags_and_daily_summary(
    built: TransformResult, read_rows: Callable[..., Any]
) -> None:
    expected = expected_metrics([v for _, _, v in trace()])
    (overview,) = read_rows("marts.mrt_glucose_overview", site_id=SITE)
    assert overview["timezone"] == "Europe/Berlin"
    assert overview["sensor_interval_minutes"] == 5
    assert overview["tir_pct"] == pytest.approx(72.5)
    assert overview["is_tir_target_met"] is True  # > 70
    tbr = expected["tbr_level_1_pct"] + expected["tbr_level_2_pct"]
    assert overview["is_tbr_target_met"] is (tbr < 4)
    assert overview["is_tbr_level_2_target_met"] is (expected["tbr_level_2_pct"] < 1)
    assert overview["is_tar_target_met"] is (
        expected["tar_level_1_pct"] + expected["tar_level_2_pct"] < 25
    )
    assert overview["is_tar_level_2_target_met"] is (expected["tar_level_2_pct"] < 5)
    assert overview["is_cv_target_met"] is (expected["cv_pct"] <= 36)
    assert overview["is_all_targets_met"] is False
    assert overview["hypo_level_1_event_count"] == DAYS
    assert overview["hyper_event_mean_minutes"] == pytest.approx(85.0)

    summary = {r["local_date"]: r for r in read_rows("marts.mrt_daily_summary", site_id=SITE)}
    assert len(summary) == DAYS
    for row in summary.values():
        assert row["bolus_insulin_units"] == pytest.approx(5.5)  # day 1's duplicate meal bolus once
        assert (row["bolus_count"], row["carb_entry_count"], row["temp_basal_count"]) == (2, 1, 1)
        assert row["carbs_grams"] == pytest.approx(45.0)
        assert (row["hypo_level_1_event_count"], row["hyper_event_count"]) == (1, 1)
    bands = read_rows("marts.mrt_time_in_range", site_id=SITE)
    assert {round(r["tir_pct"], 4) for r in bands} == {72.5}
    assert len(read_rows("silver.fct_device_status", site_id=SITE)) == 3


def test_local_hour_uses_each_readings_own_offset(
    built: TransformResult, read_rows: Callable[..., Any]
) -> None:
    cells = read_rows("marts.mrt_glucose_hourly_patterns", site_id=TRAVELER)
    assert cells
    for cell in cells:  # a fixed offset would mix hours: the mean would not be 100 + hour
        assert cell["mean_glucose_mg_dl"] == 100 + cell["local_hour"]
        assert cell["sd_glucose_mg_dl"] in (None, 0.0)
    readings = read_rows("silver.fct_glucose_readings", site_id=TRAVELER)
    assert {r["utc_offset_minutes"] for r in readings} == {60, -300}
    assert all(r["glucose_mg_dl"] == 100 + r["local_hour"] for r in readings)
    daily = read_rows("gold.glucose_metrics_daily", site_id=TRAVELER)
    long_day = max(daily, key=lambda r: r["reading_count"])
    # flying west at 00:00 UTC (01:00 in Berlin) replays 19:00-24:00 in New York: a 29-hour local day
    assert long_day["local_date"] == date(2025, 12, 3)
    assert long_day["reading_count"] == 288 + 60
    assert long_day["cgm_active_pct"] == 100.0  # capped
