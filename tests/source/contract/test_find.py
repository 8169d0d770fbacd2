"""v1 `find` conditions as lib/server/query.js builds them: typed fields (parseInt for entries'
`date`), the date field's values rewritten to UTC ISO, and the 4-day default window when a
query names no time condition (one with only `$lte` has no lower bound)."""

from __future__ import annotations

import contract_docs as docs
import pytest
from nightscout_api import Day, NightscoutApi

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def test_without_a_time_condition_only_the_last_four_days_are_searched(
    ns: NightscoutApi, day: Day, server_now: int
) -> None:
    recent, old = server_now - 3 * DAY_MS, server_now - 5 * DAY_MS
    ns.v1_post("treatments", [docs.treatment_at(t, day.marker) for t in (recent, old)])
    ns.v1_post("entries", [docs.entry_at(t, day.marker) for t in (recent, old)])

    treatments = ns.v1("/api/v1/treatments.json", {"find[notes]": day.marker})
    assert [t["created_at"] for t in treatments] == [docs.iso(recent)]
    unbounded = ns.v1(
        "/api/v1/treatments.json",
        {"find[notes]": day.marker, "find[created_at][$lte]": docs.iso(server_now)},
    )
    assert [t["created_at"] for t in unbounded] == [docs.iso(recent), docs.iso(old)]

    entries = ns.v1("/api/v1/entries.json", {"find[device]": day.marker})
    assert [e["date"] for e in entries] == [recent]
    unbounded_entries = ns.v1(
        "/api/v1/entries.json", {"find[device]": day.marker, "find[date][$lte]": server_now}
    )
    assert [e["date"] for e in unbounded_entries] == [recent, old]


def test_created_at_bounds_are_compared_in_utc(ns: NightscoutApi, day: Day) -> None:
    ns.v1_post("treatments", [docs.treatment(day, 10), docs.treatment(day, 12)])
    local = day.start.strftime("%Y-%m-%d") + "T13:00:00+02:00"  # 11:00Z
    found = ns.v1(
        "/api/v1/treatments.json",
        {"find[notes]": day.marker, "find[created_at][$gte]": local},
    )
    assert [t["created_at"] for t in found] == [day.iso(12)]
    # an unescaped "+" arrives as a space; query.js puts it back
    raw = ns.http.get(
        f"/api/v1/treatments.json?find[notes]={day.marker}&find[created_at][$gte]={local}",
        headers=ns.secret_header,
    )
    assert [t["created_at"] for t in raw.json()] == [day.iso(12)]


def test_entries_date_is_parsed_like_parseint(ns: NightscoutApi, day: Day) -> None:
    ns.v1_post("entries", [docs.entry(day, 6), docs.entry(day, 18)])
    found = ns.v1(
        "/api/v1/entries.json",
        {"find[device]": day.marker, "find[date][$gte]": f"{day.ms(12)}.9ms"},
    )
    assert [e["date"] for e in found] == [day.ms(18)]
