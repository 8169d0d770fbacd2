"""A bad document is a reject with its reason, never a stopped site: known poison, then fuzzing."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.lake.records import ParsedBatch, rejects_to_arrow, to_arrow
from cascade.lake.schemas import RAW_COLLECTIONS

NOW_MS = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
GOOD = {"_id": "a" * 24, "type": "sgv", "sgv": 120, "date": NOW_MS - 60_000, "device": "xDrip"}


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _load(collection: str, docs: list[Any]) -> ParsedBatch:
    batch = ParsedBatch(collection, "site")
    batch.add(docs, now_ms=NOW_MS)
    # both must be storable: this is where an unrepresentable value would stop the site
    to_arrow(collection, batch.rows, ingested_at_us=NOW_MS * 1000, load_id="t", api="v1")
    rejects_to_arrow(batch.rejects, ingested_at_us=NOW_MS * 1000, load_id="t")
    return batch


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sgv": "NaN"}, "sgv is not a finite number"),
        ({"sgv": "Infinity"}, "sgv is not a finite number"),
        ({"sgv": 1e10}, "sgv 1e+10 is outside 0..1000"),
        ({"sgv": 1e30}, "sgv 1e+30 is outside 0..1000"),
        ({"sgv": -5}, "sgv -5 is outside 0..1000"),
        ({"sgv": 1e9}, "sgv 1e+09 is outside 0..1000"),
        ({"mbg": float("inf")}, "mbg is not a finite number"),
        ({"date": "inf"}, "is not a representable time"),
        ({"date": 1e300}, "is not a representable time"),
        ({"utcOffset": 1e12}, "utcOffset 1000000000000.0 minutes is not a time zone offset"),
        ({"srvModified": 1e17}, "srvModified 1e+17 is not a server time"),
        ({"device": "\ud800"}, "device is not valid Unicode"),
        ({"_id": "\udfff" * 3}, "source_id is not valid Unicode"),
    ],
)
def test_poison_values_are_rejected_with_a_reason(change: dict[str, Any], reason: str) -> None:
    batch = _load("entries", [GOOD, {**GOOD, "_id": "b" * 24, **change}])
    assert len(batch.rows) == 1 and batch.rows[0]["source_id"] == "a" * 24
    assert len(batch.rejects) == 1
    assert reason in batch.rejects[0]["reason"]


@pytest.mark.parametrize("item", [42, "text", None, [], True, _deep(5000)])
def test_items_that_are_not_documents_are_rejected(item: Any) -> None:
    batch = _load("treatments", [item])
    assert batch.rows == [] and len(batch.rejects) == 1
    assert batch.rejects[0]["reason"].startswith("document is a")


def test_a_document_nested_deeper_than_python_recurses_is_kept_as_a_reject() -> None:
    batch = _load(
        "devicestatus", [{"_id": "c" * 24, "created_at": "2026-05-31T00:00:00Z", "x": _deep(5000)}]
    )
    assert len(batch.rows) + len(batch.rejects) == 1


# ---- fuzzing: any JSON at all, in the fields Cascade reads and elsewhere -------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=12)  # lone surrogates included
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = (
    "_id", "identifier", "date", "dateString", "sysTime", "created_at", "timestamp", "mills",
    "startDate", "sgv", "mbg", "type", "direction", "delta", "noise", "utcOffset", "srvCreated",
    "srvModified", "isValid", "device", "app", "enteredBy", "insulin", "carbs", "rate",
    "absolute", "percent", "duration", "glucose", "targetTop", "isSMB", "eventType", "notes",
    "pump", "uploader", "uploaderBattery", "loop", "openaps", "store", "defaultProfile", "units",
)  # fmt: skip
DOCUMENT = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=10)
PLAUSIBLE_DOCUMENT = st.fixed_dictionaries(
    {"_id": st.text(min_size=1, max_size=24), "date": st.integers(NOW_MS - 10**10, NOW_MS)},
    optional={name: JSON for name in FIELDS if name not in ("_id", "date")},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    collection=st.sampled_from(RAW_COLLECTIONS),
    docs=st.lists(DOCUMENT | PLAUSIBLE_DOCUMENT | JSON, max_size=8),
)
def test_every_document_becomes_a_row_or_a_reject_with_a_reason(
    collection: str, docs: list[Any]
) -> None:
    batch = _load(collection, docs)
    assert len(batch.rows) + len(batch.rejects) == len(docs)
    assert all(reject["reason"] for reject in batch.rejects)
    for row in batch.rows:
        assert all(not isinstance(v, float) or math.isfinite(v) for v in row.values())
    rows = to_arrow(collection, batch.rows, ingested_at_us=0, load_id="t", api="v1")
    assert rows.num_rows == len(batch.rows)
    assert pa.compute.all(pa.compute.is_valid(rows["event_at"])).as_py() in (True, None)
