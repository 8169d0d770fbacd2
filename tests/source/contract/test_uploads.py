"""Which server fields a document gets from the API that wrote it, and who then sees it.

lib/server/{entries,treatments,devicestatus,profile}.js (v1 create sets none of
identifier/srvCreated/srvModified/isValid), lib/api3/generic/create/insert.js (v3 sets
srvCreated/srvModified), lib/api3/generic/history/operation.js (history filters on the
stored srvModified), lib/api3/storage/mongoCollection/utils.js (normalizeDoc) and
lib/api3/generic/collection.js (resolveDates).
"""

from __future__ import annotations

import uuid

import contract_docs as docs
import pytest
from nightscout_api import HEX24, SERVER_FIELDS, UUID, Day, NightscoutApi, iso

pytestmark = pytest.mark.integration

V3_NAMESPACE = uuid.UUID(bytes=b"NightscoutRocks!")


@pytest.mark.parametrize("collection", ["entries", "treatments", "devicestatus", "profile"])
def test_a_v1_upload_gets_an_id_and_no_other_server_field(
    ns: NightscoutApi, day: Day, collection: str
) -> None:
    answered = ns.v1_post(collection, [docs.make(collection, day, 9)])
    assert len(answered) == 1 and HEX24.match(answered[0]["_id"])
    path, params = docs.day_query(collection, day)
    stored = ns.v1(path, params)
    assert [doc["_id"] for doc in stored] == [answered[0]["_id"]]
    assert not SERVER_FIELDS & set(stored[0]), sorted(SERVER_FIELDS & set(stored[0]))


@pytest.mark.parametrize("collection", ["entries", "treatments"])
def test_v3_history_misses_a_v1_upload_that_v3_search_and_read_show(
    ns: NightscoutApi, day: Day, server_now: int, collection: str
) -> None:
    doc = docs.make(collection, day, 7.5)
    oid = ns.v1_post(collection, [doc])[0]["_id"]

    changed = ns.history_since(collection, server_now)
    assert oid not in {d["identifier"] for d in changed}

    marker_field = "device" if collection == "entries" else "notes"
    found = ns.v3_result(f"/api/v3/{collection}", {marker_field: day.marker})
    assert len(found) == 1
    seen = found[0]
    # normalizeDoc: identifier is the _id, _id itself is dropped
    assert seen["identifier"] == oid and "_id" not in seen
    # resolveDates: srvModified/srvCreated stand in from the event time; no isValid
    event_ms = day.ms(7.5)
    assert seen["srvModified"] == seen["srvCreated"] == event_ms
    assert "isValid" not in seen

    read = ns.v3(f"/api/v3/{collection}/{oid}")
    assert read.status_code == 200
    assert read.json()["result"]["identifier"] == oid
    assert read.headers["last-modified"].endswith("GMT")


def test_a_v3_create_has_server_fields_and_v1_shows_both_ids(
    ns: NightscoutApi, day: Day, server_now: int
) -> None:
    when = day.ms(9)
    identifier = ns.v3_create(
        "treatments",
        {
            "eventType": "Note",
            "date": when,
            "utcOffset": 0,
            "app": "cascade-contract",
            "device": day.marker,
            "notes": day.marker,
        },
    )
    # lib/api3/shared/operationTools.js calculateIdentifier: uuid v5 of device_date_eventType
    assert identifier == str(uuid.uuid5(V3_NAMESPACE, f"{day.marker}_{when}_Note"))
    assert UUID.match(identifier)

    path, params = docs.day_query("treatments", day)
    stored = ns.v1(path, params)
    assert len(stored) == 1
    doc = stored[0]
    assert HEX24.match(doc["_id"]) and doc["identifier"] == identifier
    assert isinstance(doc["srvModified"], int) and doc["srvCreated"] == doc["srvModified"]
    assert doc["srvModified"] >= server_now
    assert "isValid" not in doc  # v3 create does not set it
    assert doc["created_at"] == iso(when) and doc["date"] == when  # parseDate
    assert doc["subject"] == "cascade-contract"  # the token's subject name

    changed = ns.history_since("treatments", server_now)
    assert [d["srvModified"] for d in changed if d["identifier"] == identifier] == [
        doc["srvModified"]
    ]
    assert all("_id" not in d for d in changed)


def test_a_v3_patch_brings_a_v1_upload_into_history(
    ns: NightscoutApi, day: Day, server_now: int
) -> None:
    oid = ns.v1_post("treatments", [docs.treatment(day, 14)])[0]["_id"]
    patched = ns.v3_patch("treatments", oid, {"enteredBy": "patched"})
    assert patched.status_code == 200 and patched.json() == {"status": 200}

    path, params = docs.day_query("treatments", day)
    [stored] = ns.v1(path, params)
    assert stored["enteredBy"] == "patched"
    assert stored["srvModified"] >= server_now
    # patch $sets srvModified only: no identifier, srvCreated or isValid is stored
    assert not {"identifier", "srvCreated", "isValid"} & set(stored)

    [seen] = [d for d in ns.history_since("treatments", server_now) if d["identifier"] == oid]
    assert seen["srvModified"] == stored["srvModified"] == seen["srvCreated"]
    assert seen["enteredBy"] == "patched" and "_id" not in seen


def test_a_v3_update_of_a_v1_treatment_is_refused(ns: NightscoutApi, day: Day) -> None:
    """PUT runs parseDate, which adds `date`; a v1 treatment has none, and `date` is
    immutable (lib/api3/generic/update/validate.js)."""
    oid = ns.v1_post("treatments", [docs.treatment(day, 15)])[0]["_id"]
    replacement = {**docs.treatment(day, 15), "app": "cascade-contract", "utcOffset": 0}
    refused = ns.v3_put("treatments", oid, replacement)
    assert refused.status_code == 400
    assert refused.json()["message"] == "Field date cannot be modified by the client"
