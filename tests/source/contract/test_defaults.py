"""Default page sizes and orders of v1 reads: lib/api/entries/index.js (ENTRIES_DEFAULT_COUNT
10), lib/api/treatments/index.js (100, or 1000 with a find), lib/api/devicestatus/index.js
(10), lib/api/profile/index.js + lib/server/profile.js (PROFILES_DEFAULT_COUNT 10, newest
startDate first, `?count=` honoured)."""

from __future__ import annotations

import contract_docs as docs
import pytest
from nightscout_api import Day, NightscoutApi

pytestmark = pytest.mark.integration


def test_profile_returns_ten_newest_by_default_and_honours_count(
    ns: NightscoutApi, day: Day
) -> None:
    ns.v1_post("profile", [docs.profile(day, hour) for hour in range(12)])
    # every profile on the site counts here (profile.js list: find({})); there are >= 12
    default = ns.v1("/api/v1/profile.json")
    assert len(default) == 10
    starts = [p["startDate"] for p in default]
    assert starts == sorted(starts, reverse=True)
    assert len(ns.v1("/api/v1/profile.json", {"count": 12})) == 12
    assert len(ns.v1("/api/v1/profile.json", {"count": 3})) == 3
    # /profiles: query_models → list_query (find[startDate]), the same default count
    path, params = docs.day_query("profile", day)
    ours = ns.v1(path, params)
    assert [p["startDate"] for p in ours] == [day.iso(hour) for hour in range(11, 1, -1)]
    assert len(ns.v1(path, {**params, "count": 50})) == 12


def test_entries_return_ten_newest_by_default(ns: NightscoutApi, day: Day) -> None:
    ns.v1_post("entries", [docs.entry(day, hour) for hour in range(12)])
    path, params = docs.day_query("entries", day)
    newest = ns.v1(path, params)
    assert [e["date"] for e in newest] == [day.ms(hour) for hour in range(11, 1, -1)]
    assert len(ns.v1(path, {**params, "count": 12})) == 12


def test_devicestatus_returns_ten_newest_by_default(ns: NightscoutApi, day: Day) -> None:
    ns.v1_post("devicestatus", [docs.devicestatus(day, hour) for hour in range(12)])
    path, params = docs.day_query("devicestatus", day)
    newest = ns.v1(path, params)
    assert [s["created_at"] for s in newest] == [day.iso(hour) for hour in range(11, 1, -1)]


def test_treatments_with_a_find_return_up_to_a_thousand(ns: NightscoutApi, day: Day) -> None:
    ns.v1_post("treatments", [docs.treatment(day, minute / 60) for minute in range(120)])
    path, params = docs.day_query("treatments", day)
    found = ns.v1(path, params)
    assert len(found) == 120  # more than the 100 a read without find gets
    assert found[0]["created_at"] == day.iso(119 / 60)
