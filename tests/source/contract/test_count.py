"""`GET /api/v1/count/<storage>/where` (lib/api/entries/index.js count_records →
lib/server/aggregate.js). The aggregate builds its `$match` with query.js's *default*
options, so for every storage the required time condition is on `date` (or `dateString`,
or `_id`); without one it adds `date >= <ISO string>`, which no numeric or missing `date`
matches. The answer is `[{"_id": null, "count": n}]`, or `[]` when nothing matches."""

from __future__ import annotations

import contract_docs as docs
import pytest
from nightscout_api import Day, NightscoutApi

pytestmark = pytest.mark.integration

NO_SUCH_ID = "0" * 24  # `find[_id][$ne]` of an ObjectId nobody has: every document


def test_counting_entries_needs_a_date_condition(ns: NightscoutApi, day: Day) -> None:
    ns.v1_post("entries", [docs.entry(day, hour) for hour in range(5)])
    counted = ns.v1(
        "/api/v1/count/entries/where",
        {
            "find[date][$gte]": day.start_ms,
            "find[date][$lt]": day.end_ms,
            "find[device]": day.marker,
        },
    )
    assert counted == [{"_id": None, "count": 5}]
    assert ns.v1("/api/v1/count/entries/where", {"find[device]": day.marker}) == []
    everything = ns.v1(
        "/api/v1/count/entries/where", {"find[date][$gte]": 0, "find[device]": day.marker}
    )
    assert everything == [{"_id": None, "count": 5}]


@pytest.mark.parametrize(
    ("collection", "marker_field"), [("treatments", "notes"), ("devicestatus", "device")]
)
def test_counting_treatments_and_devicestatus_needs_an_id_condition(
    ns: NightscoutApi, day: Day, collection: str, marker_field: str
) -> None:
    ns.v1_post(collection, [docs.make(collection, day, hour) for hour in range(4)])
    path = f"/api/v1/count/{collection}/where"
    marker = {f"find[{marker_field}]": day.marker}
    in_day = {"find[created_at][$gte]": day.iso(0), "find[created_at][$lt]": day.iso(24)}
    # created_at is not the date field here: the `date` rule still applies, nothing matches
    assert ns.v1(path, {**marker, **in_day}) == []
    every = {"find[_id][$ne]": NO_SUCH_ID}
    assert ns.v1(path, {**marker, **every}) == [{"_id": None, "count": 4}]
    assert ns.v1(path, {**marker, **every, **in_day}) == [{"_id": None, "count": 4}]
    before = {"find[created_at][$lt]": day.iso(2)}
    assert ns.v1(path, {**marker, **every, **before}) == [{"_id": None, "count": 2}]
    assert ns.v1(path, {f"find[{marker_field}]": day.marker + "-none", **every}) == []
