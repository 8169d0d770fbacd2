"""Deletes through v3 (lib/api3/generic/delete/operation.js): a soft delete sets
`isValid: false` and a new `srvModified`; v1 has no soft-delete filter (lib/server/*.js), so
it keeps returning the document; v3 search hides it, v3 read answers 410, history shows it."""

from __future__ import annotations

import contract_docs as docs
import pytest
from nightscout_api import Day, NightscoutApi

pytestmark = pytest.mark.integration


def test_a_soft_delete_stays_visible_to_v1_with_isvalid_false(
    ns: NightscoutApi, day: Day, server_now: int
) -> None:
    oid = ns.v1_post("treatments", [docs.treatment(day, 8)])[0]["_id"]
    deleted = ns.v3_delete("treatments", oid)
    assert deleted.status_code == 200 and deleted.json() == {"status": 200}

    path, params = docs.day_query("treatments", day)
    [stored] = ns.v1(path, params)
    assert stored["_id"] == oid and stored["isValid"] is False
    assert stored["srvModified"] >= server_now

    assert ns.v3_result("/api/v3/treatments", {"notes": day.marker}) == []
    gone = ns.v3(f"/api/v3/treatments/{oid}")
    assert gone.status_code == 410 and gone.json() == {"status": 410}

    changed = [d for d in ns.history_since("treatments", server_now) if d["identifier"] == oid]
    assert [(d["isValid"], d["srvModified"]) for d in changed] == [(False, stored["srvModified"])]


def test_a_permanent_delete_leaves_nothing_to_see(
    ns: NightscoutApi, day: Day, server_now: int
) -> None:
    oid = ns.v1_post("treatments", [docs.treatment(day, 8)])[0]["_id"]
    assert ns.v3_delete("treatments", oid, permanent=True).status_code == 200
    path, params = docs.day_query("treatments", day)
    assert ns.v1(path, params) == []
    assert oid not in {d["identifier"] for d in ns.history_since("treatments", server_now)}
    missing = ns.v3(f"/api/v3/treatments/{oid}")
    assert missing.status_code == 404 and missing.json() == {"status": 404}
