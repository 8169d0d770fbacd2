"""Tests for the synthetic Nightscout generator.

The statistical bounds are the ranges the generator promises for type 1 diabetes
on a closed loop (International Consensus on Time in Range, Battelino et al.,
Diabetes Care 2019;42(8):1593-1603, for the metric definitions).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from cascade_dev.fake_nightscout.synthetic import (
    COLLECTIONS,
    ERROR_CODES,
    HIGH_CLAMP,
    LOW_CLAMP,
    SubjectSpec,
    dirty_record_counts,
    generate_subject,
    scripted_entries,
    subject_specs,
)

END = datetime(2026, 11, 20, 8, 7, 31, tzinfo=UTC)  # deliberately not on a 5-min tick
END_MS = int(datetime(2026, 11, 20, 8, 5, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000
SERVER_FIELDS = ("_id", "identifier", "srvCreated", "srvModified", "isValid")
TYPED_FIELDS = ("sgv", "mbg", "insulin", "carbs", "rate", "duration")
Y2000_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)

Data = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def specs() -> list[SubjectSpec]:
    return subject_specs(4, seed=7)


@pytest.fixture(scope="module")
def month(specs: list[SubjectSpec]) -> list[Data]:
    """30 clean days at 5 min for four subjects (loop, traveller/aaps, Kolkata/aaps, Sydney/loop)."""
    return [generate_subject(s, days=30, seed=1, end=END, dirty=False) for s in specs]


@pytest.fixture(scope="module")
def month_dirty(specs: list[SubjectSpec]) -> Data:
    return generate_subject(specs[1], days=30, seed=1, end=END, dirty=True)


def sgv_values(data: Data) -> np.ndarray:
    return np.array([e["sgv"] for e in data["entries"] if e["type"] == "sgv"], dtype=np.int64)


def glucose_values(data: Data) -> np.ndarray:
    """Readings that are glucose (39..401), not sensor error codes."""
    values = sgv_values(data)
    return values[values >= LOW_CLAMP]


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# ----------------------------------------------------------------------------- specs


def test_subject_specs_are_deterministic_and_varied() -> None:
    specs = subject_specs(8, seed=3)
    assert specs == subject_specs(8, seed=3)
    assert specs != subject_specs(8, seed=4)
    assert len({s.subject_id for s in specs}) == 8
    assert {s.uploader for s in specs} == {"loop", "aaps"}
    zones = {s.timezone for s in specs}
    assert {"America/New_York", "Asia/Kolkata", "Europe/Berlin"} <= zones
    assert [s.travels for s in specs].index(True) == 1
    assert specs[1].timezone == "Europe/Berlin"
    assert specs[1].travel_timezone == "America/New_York"
    assert subject_specs(1, seed=3)[0].travels


def test_spec_rejects_unknown_uploader() -> None:
    with pytest.raises(ValueError, match="uploader"):
        SubjectSpec("x", "Europe/Berlin", "medtronic", False)


# ----------------------------------------------------------------------------- shape


def test_output_shape_and_no_server_fields(month: list[Data]) -> None:
    for data in month:
        assert tuple(data) == COLLECTIONS
        for docs in data.values():
            assert docs
            for doc in docs:
                assert not any(field in doc for field in SERVER_FIELDS)


def test_deterministic(specs: list[SubjectSpec], month: list[Data]) -> None:
    again = generate_subject(specs[0], days=30, seed=1, end=END, dirty=False)
    assert again == month[0]
    other_seed = generate_subject(specs[0], days=30, seed=2, end=END, dirty=False)
    assert sgv_values(other_seed).tolist() != sgv_values(month[0]).tolist()
    a, b = sgv_values(month[0]), sgv_values(month[3])
    assert a[: min(len(a), len(b))].tolist() != b[: min(len(a), len(b))].tolist()


def test_window_and_alignment(month: list[Data]) -> None:
    for data in month:
        sgvs = [e for e in data["entries"] if e["type"] == "sgv"]
        dates = [e["date"] for e in sgvs]
        assert min(dates) >= END_MS - 30 * DAY_MS
        assert max(dates) < END_MS
        assert all(d % 300_000 == 0 for d in dates)
        assert len(set(dates)) == len(dates)  # clean data has no duplicates
        for t in data["treatments"] + data["devicestatus"]:
            assert END_MS - 30 * DAY_MS <= iso_ms(t["created_at"]) < END_MS


def test_default_end_is_now_rounded_down() -> None:
    before = datetime.now(UTC)
    data = generate_subject(subject_specs(1, 0)[0], days=1, interval_minutes=1, dirty=False)
    newest = max(e["date"] for e in data["entries"] if e["type"] == "sgv")
    assert newest % 60_000 == 0
    assert newest < before.timestamp() * 1000 + 60_000
    assert newest > (before - timedelta(hours=3)).timestamp() * 1000


# ----------------------------------------------------------------------------- entries


@pytest.mark.parametrize("interval", [1, 5])
def test_readings_per_day(specs: list[SubjectSpec], interval: int) -> None:
    days = 12  # spans at least one sensor change (2 h warm-up gap)
    data = generate_subject(specs[2], days=days, interval_minutes=interval, end=END, dirty=False)
    per_day_nominal = 1440 // interval
    dates = np.array([e["date"] for e in data["entries"] if e["type"] == "sgv"])
    assert len(dates) <= days * per_day_nominal
    assert len(dates) >= 0.96 * days * per_day_nominal
    end_ms = int(END.timestamp() * 1000) // (interval * 60_000) * (interval * 60_000)
    assert dates.max() < end_ms
    day_index = (dates - (end_ms - days * DAY_MS)) // DAY_MS
    counts = np.bincount(day_index, minlength=days)
    assert len(counts) == days
    # Worst day: a 2 h warm-up gap plus a signal loss of up to 40 minutes.
    assert counts.min() >= per_day_nominal - (160 // interval)
    sensor_changes = [t for t in data["treatments"] if t["eventType"] == "Sensor Change"]
    assert len(sensor_changes) >= 1
    assert {e["device"] for e in data["entries"] if e["type"] == "sgv"} == {
        "xDrip-LibreReceiver" if interval == 1 else specs[2].cgm_device
    }


def test_warmup_gap_follows_each_sensor_change(month: list[Data]) -> None:
    for data in month:
        dates = np.array(sorted(e["date"] for e in data["entries"] if e["type"] == "sgv"))
        changes = [
            iso_ms(t["created_at"]) for t in data["treatments"] if t["eventType"] == "Sensor Change"
        ]
        starts = [
            iso_ms(t["created_at"]) for t in data["treatments"] if t["eventType"] == "Sensor Start"
        ]
        assert len(changes) == len(starts) >= 2  # 30 days, a sensor every 10 days
        for change in changes:
            inside = (dates >= change) & (dates < change + 2 * 3_600_000)
            assert not inside.any()


def test_glucose_statistics_are_plausible(month: list[Data]) -> None:
    for data in month:
        g = glucose_values(data)
        mean = g.mean()
        cv = 100 * g.std() / mean
        tir = 100 * np.mean((g >= 70) & (g <= 180))
        assert 140 <= mean <= 180, mean
        assert 26 <= cv <= 42, cv
        assert 50 <= tir <= 85, tir
        assert 0.3 <= 100 * np.mean(g < 70) <= 6
        assert 2 <= 100 * np.mean(g > 250) <= 15
        assert np.percentile(g, 95) > 230


def test_dawn_phenomenon_and_meals_shape_the_day(month: list[Data]) -> None:
    g_by_hour: dict[int, list[int]] = {h: [] for h in range(24)}
    for data in month:
        for e in data["entries"]:
            if e["type"] == "sgv" and e["sgv"] >= LOW_CLAMP:
                hour = ((e["date"] // 60_000 + e["utcOffset"]) % 1440) // 60
                g_by_hour[hour].append(e["sgv"])
    median = {h: float(np.median(v)) for h, v in g_by_hour.items()}
    assert median[7] > median[3] + 10  # dawn + breakfast
    assert median[3] < 170  # nights mostly in range


def test_clamps_and_error_codes() -> None:
    # 90 days of a few subjects: enough for sensor errors, LOW and HIGH readings.
    seen: Counter[int] = Counter()
    for spec in subject_specs(3, seed=11):
        data = generate_subject(spec, days=90, end=END, dirty=False)
        for e in data["entries"]:
            if e["type"] != "sgv":
                continue
            value = e["sgv"]
            if value < 40:
                assert value == LOW_CLAMP or value in ERROR_CODES
            if value > 400:
                assert value == HIGH_CLAMP
            if value in ERROR_CODES:
                assert e["direction"] == "NOT COMPUTABLE"
            seen[value] += 1
    assert seen[LOW_CLAMP] > 0
    assert seen[HIGH_CLAMP] > 0
    assert sum(seen[c] for c in ERROR_CODES) > 0


def test_directions_and_deltas(month: list[Data]) -> None:
    allowed = {
        "DoubleUp",
        "SingleUp",
        "FortyFiveUp",
        "Flat",
        "FortyFiveDown",
        "SingleDown",
        "DoubleDown",
        "NOT COMPUTABLE",
    }
    for data in month:
        sgvs = [e for e in data["entries"] if e["type"] == "sgv"]
        directions = Counter(e["direction"] for e in sgvs)
        assert set(directions) <= allowed
        assert directions["Flat"] > 0.4 * len(sgvs)
        assert directions["DoubleUp"] + directions["SingleUp"] > 0
        for e in sgvs:
            assert isinstance(e["sgv"], int)
            assert isinstance(e["noise"], int)
            if "delta" in e:
                assert isinstance(e["delta"], float)


def test_date_string_agrees_with_utc_offset(month: list[Data]) -> None:
    for data in month:
        for e in data["entries"]:
            parsed = datetime.fromisoformat(e["dateString"])
            offset = parsed.utcoffset()
            assert offset is not None
            assert offset == timedelta(minutes=e["utcOffset"])
            assert int(parsed.timestamp() * 1000) == e["date"]
        for t in data["treatments"]:
            assert t["created_at"].endswith("Z")
            assert isinstance(t["utcOffset"], int)


def test_offsets_per_zone(specs: list[SubjectSpec], month: list[Data]) -> None:
    # Late Oct to Nov 20: New York leaves DST on 1 Nov 2026, Kolkata has none.
    ny = {e["utcOffset"] for e in month[0]["entries"]}
    kolkata = {e["utcOffset"] for e in month[2]["entries"]}
    sydney = {e["utcOffset"] for e in month[3]["entries"]}
    assert ny == {-240, -300}
    assert kolkata == {330}
    assert all(e["dateString"].endswith("+05:30") for e in month[2]["entries"])
    assert sydney == {660}


def test_dst_transition_is_at_the_right_instant() -> None:
    spec = SubjectSpec("dst", "Europe/Berlin", "loop", False)
    end = datetime(2026, 10, 26, tzinfo=UTC)
    data = generate_subject(spec, days=2, end=end, dirty=False)
    switch = int(datetime(2026, 10, 25, 1, 0, tzinfo=UTC).timestamp() * 1000)
    for e in data["entries"]:
        assert e["utcOffset"] == (120 if e["date"] < switch else 60)


def test_traveller_changes_offset_and_profile(specs: list[SubjectSpec], month: list[Data]) -> None:
    traveller = month[1]
    assert specs[1].travels
    offsets = [e["utcOffset"] for e in traveller["entries"] if e["type"] == "sgv"]
    # Berlin (summer time until 25 Oct, then winter) and New York (winter)
    assert set(offsets) == {120, 60, -300}
    # one contiguous stay away, in the middle, about a week long
    away = np.flatnonzero(np.array(offsets) < 0)
    assert away[-1] - away[0] + 1 == len(away)
    assert 0.2 < away[0] / len(offsets) < 0.5
    assert 6 * 288 <= len(away) <= 7 * 288
    zones = [p["store"]["Default"]["timezone"] for p in traveller["profile"]]
    assert "America/New_York" in zones
    assert zones[0] == zones[-1] == "Europe/Berlin"
    assert {t["utcOffset"] for t in traveller["treatments"]} == {120, 60, -300}
    # meals follow local time: boluses are eaten during the local day
    hours = [
        ((iso_ms(t["created_at"]) // 60_000 + t["utcOffset"]) % 1440) // 60
        for t in traveller["treatments"]
        if t["eventType"] == "Meal Bolus"
    ]
    assert sum(5 <= h <= 23 for h in hours) >= 0.95 * len(hours)


def test_meter_and_calibration_entries(month: list[Data]) -> None:
    for data in month:
        types = Counter(e["type"] for e in data["entries"])
        assert 6 <= types["mbg"] <= 25  # ~3 a week
        assert 1 <= types["cal"] <= 4  # one per sensor session
        for e in data["entries"]:
            if e["type"] == "mbg":
                assert isinstance(e["mbg"], int)
                assert 20 <= e["mbg"] <= 600


# ----------------------------------------------------------------------------- treatments


def test_treatments_content(specs: list[SubjectSpec], month: list[Data]) -> None:
    for spec, data in zip(specs, month, strict=True):
        kinds = Counter(t["eventType"] for t in data["treatments"])
        assert 100 * 30 <= kinds["Temp Basal"] <= 288 * 30
        assert kinds["Meal Bolus"] >= 2.5 * 30
        assert kinds["Correction Bolus"] > 30
        assert kinds["Carb Correction"] > 0
        assert 9 <= kinds["Site Change"] <= 15  # every 3 days, plus one after a site failure
        assert kinds["Sensor Change"] == kinds["Sensor Start"] >= 2
        assert kinds["Note"] > 0
        entered_by = {t["enteredBy"] for t in data["treatments"]}
        if spec.uploader == "loop":
            assert entered_by == {"loop://iPhone"}
            assert kinds["Profile Switch"] == 0
        else:
            assert entered_by == {"openaps://AndroidAPS"}
            assert kinds["Profile Switch"] >= 3
            for t in data["treatments"]:
                assert t["date"] == iso_ms(t["created_at"])
                if "insulin" in t:
                    assert isinstance(t["isSMB"], bool)
                    assert isinstance(t["pumpId"], int)
            assert any(t.get("isSMB") for t in data["treatments"])
        for t in data["treatments"]:
            if t["eventType"] == "Meal Bolus":
                assert t["carbs"] > 0 and t["insulin"] > 0
            if t["eventType"] == "Temp Basal":
                assert t["rate"] == t["absolute"] >= 0
                assert t["duration"] == 30
    assert (
        sum(Counter(t["eventType"] for t in d["treatments"])["Temporary Target"] for d in month) > 0
    )


def test_temp_basal_cadence(month: list[Data]) -> None:
    times = np.array(
        sorted(
            iso_ms(t["created_at"])
            for t in month[0]["treatments"]
            if t["eventType"] == "Temp Basal"
        )
    )
    gaps_min = np.diff(times) / 60_000
    assert np.median(gaps_min) <= 10
    assert np.percentile(gaps_min, 95) <= 30


# ----------------------------------------------------------------------------- devicestatus


@pytest.mark.parametrize("interval", [1, 5])
def test_devicestatus_every_five_minutes(specs: list[SubjectSpec], interval: int) -> None:
    data = generate_subject(specs[0], days=2, interval_minutes=interval, end=END, dirty=False)
    statuses = data["devicestatus"]
    assert len(statuses) == 2 * 288
    times = np.array([iso_ms(d["created_at"]) for d in statuses])
    assert set(np.diff(times).tolist()) == {300_000}


def test_devicestatus_shapes(specs: list[SubjectSpec], month: list[Data]) -> None:
    for spec, data in zip(specs, month, strict=True):
        for doc in data["devicestatus"][:600]:
            assert isinstance(doc["utcOffset"], int)
            assert doc["pump"]["battery"]["percent"] >= 0
            assert doc["pump"]["reservoir"] >= 0
            if spec.uploader == "loop":
                loop = doc["loop"]
                assert doc["device"] == "loop://iPhone"
                assert isinstance(loop["iob"]["iob"], float)
                assert isinstance(loop["cob"]["cob"], float)
                if "predicted" in loop:
                    assert 12 <= len(loop["predicted"]["values"]) <= 36
                assert isinstance(doc["uploader"]["battery"], int)
            else:
                openaps = doc["openaps"]
                assert doc["device"].startswith("openaps://")
                assert {"iob", "basaliob", "time"} <= set(openaps["iob"])
                suggested = openaps["suggested"]
                if "predBGs" in suggested:
                    for curve in suggested["predBGs"].values():
                        assert 12 <= len(curve) <= 36
                    assert isinstance(suggested["eventualBG"], int)
                    assert "COB" in suggested
                assert isinstance(doc["uploaderBattery"], int)
        if spec.uploader == "loop":
            assert any("enacted" in d["loop"] for d in data["devicestatus"])
        else:
            assert any(
                "COB" in d["openaps"]["suggested"].get("predBGs", {}) for d in data["devicestatus"]
            )


def test_iob_is_plausible(month: list[Data]) -> None:
    iob = [d["loop"]["iob"]["iob"] for d in month[0]["devicestatus"]]
    assert -3 < float(np.median(iob)) < 5
    assert max(iob) < 25


# ----------------------------------------------------------------------------- profile


def test_profiles(specs: list[SubjectSpec], month: list[Data]) -> None:
    for spec, data in zip(specs, month, strict=True):
        profiles = data["profile"]
        assert 2 <= len(profiles) <= 6
        for p in profiles:
            assert p["defaultProfile"] == "Default"
            assert p["units"] == "mg/dl"
            assert p["mills"] == iso_ms(p["startDate"])
            store = p["store"]["Default"]
            assert store["dia"] == 5
            assert store["units"] == "mg/dl"
            for key in ("carbratio", "sens", "basal", "target_low", "target_high"):
                assert store[key][0]["time"] == "00:00"
                assert store[key][0]["timeAsSeconds"] == 0
                assert all(item["value"] > 0 for item in store[key])
        if not spec.travels:
            assert {p["store"]["Default"]["timezone"] for p in profiles} == {spec.timezone}


# ----------------------------------------------------------------------------- dirty data


def _event_ms(collection: str, doc: dict[str, Any]) -> int | None:
    """The event time by the documented rule (None = missing or unparseable)."""
    if collection == "entries":
        if isinstance(doc.get("date"), int | float) and not isinstance(doc.get("date"), bool):
            return int(doc["date"])
        text = doc.get("dateString")
    elif collection == "profile":
        text = doc.get("startDate")
    else:
        text = doc.get("created_at")
    if not isinstance(text, str):
        return None
    try:
        return iso_ms(text)
    except ValueError:
        return None


def _number_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return False


def _rejectable(collection: str, doc: dict[str, Any], ingested_ms: int) -> bool:
    when = _event_ms(collection, doc)
    if when is None or when < Y2000_MS or when > ingested_ms + DAY_MS:
        return True
    return any(field in doc and not _number_like(doc[field]) for field in TYPED_FIELDS)


def test_clean_data_has_nothing_to_reject(month: list[Data]) -> None:
    for data in month:
        for collection, docs in data.items():
            assert not any(_rejectable(collection, d, END_MS) for d in docs)
        assert not any(isinstance(e.get("sgv"), str) for e in data["entries"])
        assert not any(isinstance(t.get("insulin"), str) for t in data["treatments"])


@pytest.mark.parametrize("interval", [1, 5])
def test_dirty_counts_match_documentation(specs: list[SubjectSpec], interval: int) -> None:
    days = 3
    expected = dirty_record_counts(days, interval)
    clean = generate_subject(
        specs[1], days=days, interval_minutes=interval, seed=5, end=END, dirty=False
    )
    dirty = generate_subject(
        specs[1], days=days, interval_minutes=interval, seed=5, end=END, dirty=True
    )

    for collection in COLLECTIONS:
        rejected = [d for d in dirty[collection] if _rejectable(collection, d, END_MS)]
        assert len(rejected) == expected[f"rejectable_{collection}"], collection
        assert len(dirty[collection]) - len(clean[collection]) == expected[f"extra_{collection}"]

    entries = dirty["entries"]
    assert sum(1 for e in entries if "date" not in e and "dateString" not in e) == 1
    assert sum(1 for e in entries if e.get("sgv") == "abc") == 1
    numeric = [e for e in entries if isinstance(e.get("sgv"), str) and e["sgv"].isdigit()]
    assert len(numeric) == expected["entries_sgv_numeric_string"]
    dated = [e for e in entries if isinstance(e.get("date"), int)]
    assert sum(1 for e in dated if e["date"] < Y2000_MS) == 1
    assert sum(1 for e in dated if e["date"] > END_MS + 39 * DAY_MS) == 1

    by_reading = Counter((e["date"], str(e["sgv"])) for e in dated if e["type"] == "sgv")
    duplicated = [key for key, count in by_reading.items() if count > 1]
    assert len(duplicated) == expected["entries_duplicates"]
    for key in duplicated:
        devices = {e["device"] for e in dated if (e["date"], str(e.get("sgv"))) == key}
        assert len(devices) == 2

    assert [t["insulin"] for t in dirty["treatments"] if isinstance(t.get("insulin"), str)] == [
        "2.5"
    ]
    broken = next(t for t in dirty["treatments"] if t["created_at"] == "not a date")
    assert broken["eventType"] == "Note"
    assert sum(1 for d in dirty["devicestatus"] if d["created_at"].startswith("1970-")) == 1


def test_dirty_is_clean_plus_documented_changes(month_dirty: Data, month: list[Data]) -> None:
    clean = month[1]
    # undo the coercible changes and drop the additions: the clean data remains
    dirty_entries = []
    seen: set[tuple[Any, ...]] = set()
    for e in month_dirty["entries"]:
        if _rejectable("entries", e, END_MS):
            continue
        e = dict(e, sgv=int(e["sgv"])) if isinstance(e.get("sgv"), str) else e
        key = (e["type"], e["date"], e.get("sgv"), e.get("mbg"))
        if key in seen:
            continue
        seen.add(key)
        dirty_entries.append(e)
    assert dirty_entries == clean["entries"]
    treatments = [
        dict(t, insulin=float(t["insulin"])) if isinstance(t.get("insulin"), str) else t
        for t in month_dirty["treatments"]
        if not _rejectable("treatments", t, END_MS)
    ]
    assert treatments == clean["treatments"]
    statuses = [
        d for d in month_dirty["devicestatus"] if not _rejectable("devicestatus", d, END_MS)
    ]
    assert statuses == clean["devicestatus"]
    assert month_dirty["profile"] == clean["profile"]


def test_dirty_record_counts_scale_with_window() -> None:
    year = dirty_record_counts(365, 5)
    assert year["entries_duplicates"] == 105_120 * 15 // 1000
    assert 0.01 <= year["entries_duplicates"] / 105_120 <= 0.02
    assert dirty_record_counts(1, 5)["entries_duplicates"] == 4
    assert dirty_record_counts(365, 1)["entries_duplicates"] == 525_600 * 15 // 1000


# ----------------------------------------------------------------------------- scripted


def test_scripted_entries() -> None:
    start = datetime(2026, 3, 1, 23, 55, tzinfo=UTC)
    docs = scripted_entries([100, 110, None, 120, 119, 39], start=start, utc_offset_minutes=330)
    assert [d["sgv"] for d in docs] == [100, 110, 120, 119, 39]
    start_ms = int(start.timestamp() * 1000)
    assert [d["date"] for d in docs] == [start_ms + k * 300_000 for k in (0, 1, 3, 4, 5)]
    assert docs[0]["dateString"] == "2026-03-02T05:25:00.000+05:30"
    assert all(
        d["utcOffset"] == 330 and d["type"] == "sgv" and d["device"] == "scripted" for d in docs
    )
    assert [d["direction"] for d in docs] == [
        "NOT COMPUTABLE",
        "FortyFiveUp",
        "NOT COMPUTABLE",
        "Flat",
        "DoubleDown",
    ]
    assert docs[1]["delta"] == 10.0
    assert "delta" not in docs[2]
    assert docs[4]["delta"] == -80.0


def test_scripted_entries_one_minute_and_negative_offset() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    values = list(range(100, 112))
    docs = scripted_entries(
        values, start=start, interval_minutes=1, utc_offset_minutes=-300, device="d"
    )
    assert len(docs) == 12
    assert docs[1]["date"] - docs[0]["date"] == 60_000
    assert docs[0]["dateString"] == "2026-01-01T07:00:00.000-05:00"
    assert all(d["direction"] == "NOT COMPUTABLE" for d in docs[:5])
    assert docs[5]["delta"] == 5.0  # per 5 minutes, as uploaders report it
    assert docs[5]["direction"] == "Flat"
