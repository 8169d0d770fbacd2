from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cascade.lake.records import ParsedBatch, Rejected, parse, to_arrow

NOW_MS = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp() * 1000)
T = NOW_MS - 3_600_000


def test_entry_typed_fields_and_local_offset() -> None:
    doc = {
        "_id": "a1",
        "type": "sgv",
        "sgv": 123,
        "date": T,
        "dateString": "2026-11-25T23:00:00.000+01:00",
        "direction": "Flat",
        "device": "xDrip",
        "noise": 1,
        "extra": {"new": "field"},
    }
    row = parse("entries", doc, now_ms=NOW_MS)
    assert row["source_id"] == "a1"
    assert row["event_at"] == T * 1000
    assert row["sgv_mg_dl"] == 123
    assert row["utc_offset_minutes"] == 60  # from dateString when utcOffset is absent
    assert json.loads(row["document"]) == doc  # unknown fields are kept


def test_v3_identifier_wins_and_numeric_strings_are_coerced() -> None:
    doc = {
        "_id": "old",
        "identifier": "uuid-1",
        "sgv": "145",
        "date": str(T),
        "utcOffset": -300,
        "srvModified": T + 5,
        "srvCreated": T,
        "isValid": False,
    }
    row = parse("entries", doc, now_ms=NOW_MS)
    assert (row["source_id"], row["sgv_mg_dl"], row["utc_offset_minutes"]) == ("uuid-1", 145, -300)
    assert row["is_valid"] is False
    assert row["srv_modified_at"] == (T + 5) * 1000


@pytest.mark.parametrize(
    ("collection", "doc", "reason"),
    [
        ("entries", {"_id": "x", "sgv": 100}, "missing event time"),
        ("entries", {"_id": "x", "sgv": "abc", "date": T}, "sgv is not a number"),
        ("entries", {"_id": "x", "sgv": 100, "date": 5000}, "before 2000"),
        ("entries", {"_id": "x", "sgv": 100, "date": NOW_MS + 40 * 86_400_000}, "future"),
        ("treatments", {"_id": "x", "created_at": "not a date"}, "unparseable event time"),
        (
            "treatments",
            {"_id": "x", "created_at": "2026-11-25T10:00:00Z", "insulin": [1]},
            "insulin is a list",
        ),
        ("entries", {"sgv": 100, "date": T}, "missing id"),
    ],
)
def test_rejects_carry_a_reason(collection: str, doc: dict[str, object], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        parse(collection, doc, now_ms=NOW_MS)


def test_treatment_string_insulin_is_a_number() -> None:
    row = parse(
        "treatments",
        {
            "_id": "t",
            "created_at": "2026-11-25T10:00:00.000Z",
            "eventType": "Correction Bolus",
            "insulin": "2.5",
            "utcOffset": 60,
        },
        now_ms=NOW_MS,
    )
    assert row["insulin_units"] == 2.5
    assert row["event_at"] == int(datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp() * 1_000_000)


def test_devicestatus_both_shapes() -> None:
    loop = parse(
        "devicestatus",
        {
            "_id": "l",
            "created_at": "2026-11-25T10:00:00Z",
            "device": "loop://iPhone",
            "loop": {
                "iob": {"iob": 1.5},
                "cob": {"cob": 20},
                "predicted": {"startDate": "2026-11-25T10:00:00Z", "values": [120, 125, 131]},
                "enacted": {"rate": 0.8, "duration": 30},
            },
            "pump": {"reservoir": 100.5, "battery": {"percent": 75}},
            "uploader": {"battery": 60},
        },
        now_ms=NOW_MS,
    )
    assert (
        loop["loop_system"],
        loop["iob_units"],
        loop["cob_grams"],
        loop["eventual_bg_mg_dl"],
    ) == ("loop", 1.5, 20, 131)
    assert (
        loop["pump_reservoir_units"],
        loop["pump_battery_percent"],
        loop["uploader_battery_percent"],
    ) == (100.5, 75, 60)
    aaps = parse(
        "devicestatus",
        {
            "_id": "a",
            "created_at": "2026-11-25T10:00:00Z",
            "openaps": {
                "iob": {"iob": 2.0, "basaliob": 0.5},
                "suggested": {
                    "COB": 12,
                    "eventualBG": 140,
                    "predBGs": {"IOB": [1, 2], "COB": [150, 145]},
                },
                "enacted": {"rate": 1.1, "duration": 30},
            },
            "uploaderBattery": 55,
        },
        now_ms=NOW_MS,
    )
    assert (aaps["loop_system"], aaps["iob_units"], aaps["basal_iob_units"], aaps["cob_grams"]) == (
        "openaps",
        2.0,
        0.5,
        12,
    )
    assert aaps["predicted_mg_dl"] == [150.0, 145.0]  # the COB curve, what the algorithm acted on
    assert aaps["uploader_battery_percent"] == 55


def test_batch_splits_rows_and_rejects_and_builds_arrow() -> None:
    batch = ParsedBatch("entries", "site-a")
    batch.add(
        [{"_id": "1", "sgv": 100, "date": T}, {"_id": "2", "sgv": "x", "date": T}, "not an object"],
        now_ms=NOW_MS,
    )
    assert [r["source_id"] for r in batch.rows] == ["1"]
    assert [r["reason"] for r in batch.rejects] == [
        "sgv is not a number: 'x'",
        "document is a str, not an object",
    ]
    table = to_arrow("entries", batch.rows, ingested_at_us=1, load_id="L", api="v1")
    assert table.num_rows == 1 and table.column("site_id").to_pylist() == ["site-a"]
