"""The fake Nightscout over real HTTP: v1, v3, auth, faults and admin, as a reader sees them.

Behaviour shared with a real Nightscout 15.0.7 is also checked by tests/source/contract (which
can run against a real server); these tests cover the fake's own details and its admin API.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cascade_dev.fake_nightscout import FakeNightscout, SiteStore
from cascade_dev.fake_nightscout.protocol import parse_v3_time
from cascade_dev.fake_nightscout.v1_query import COUNT_QUERY_OPTIONS, build_v1_query

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
MINUTE = 60_000
SITE = "subject-01"
TOKEN = "reader-0123456789abcdef"
SECRET = "correct horse battery"


class FakeClock:
    """A settable server clock in epoch ms (and seconds, for JWT expiry)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms

    def seconds(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> None:
        self.ms += ms


def iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def tiny_site(clock: FakeClock, *, days: int = 6, api: str = "v3") -> SiteStore:
    """A small deterministic site: 5-min CGM for `days` days, hourly boluses, profiles,
    plus the dirt a reader must survive (a 1970 clock, a missing date, a string date).
    `api` is the API the documents were uploaded through."""
    store = SiteStore(SITE, clock=clock, uploaded_through=api)  # type: ignore[arg-type]
    steps = days * 24 * 12
    entries: list[dict[str, Any]] = [
        {
            "type": "sgv",
            "sgv": 80 + (i * 7) % 150,
            "direction": "Flat",
            "date": T0_MS - i * 5 * MINUTE,
            "dateString": iso(T0_MS - i * 5 * MINUTE),
            "device": "xDrip-DexcomG6",
        }
        for i in range(steps)
    ]
    entries.append({"type": "mbg", "mbg": 123, "date": T0_MS - 7 * MINUTE, "device": "meter"})
    entries.append({"type": "sgv", "sgv": 111, "date": 5_000, "device": "broken-clock"})
    entries.append({"type": "sgv", "sgv": 112, "device": "no-date"})
    entries.append(
        {"type": "sgv", "sgv": 113, "date": str(T0_MS - 2 * MINUTE), "device": "stringly"}
    )
    store.insert("entries", entries)
    store.insert(
        "treatments",
        [
            {
                "eventType": "Correction Bolus",
                "insulin": 1 + (i % 3),
                "created_at": iso(T0_MS - i * 60 * MINUTE),
                "enteredBy": "loop",
            }
            for i in range(days * 24)
        ],
    )
    store.insert(
        "devicestatus",
        [
            {
                "device": "loop://iPhone",
                "created_at": iso(T0_MS - i * 5 * MINUTE),
                "pump": {"reservoir": 100 - i},
            }
            for i in range(50)
        ],
    )
    store.insert(
        "profile",
        [
            {
                "defaultProfile": "Default",
                "startDate": iso(T0_MS - 30 * 24 * 60 * MINUTE),
                "units": "mg/dl",
            },
            {
                "defaultProfile": "Default",
                "startDate": iso(T0_MS - 3 * 24 * 60 * MINUTE),
                "units": "mg/dl",
            },
        ],
    )
    return store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0_MS + 10 * MINUTE)


def open_site(store: SiteStore, clock: FakeClock) -> FakeNightscout:
    """An open site (anonymous v1 reads) with an API secret and a reader token for v3."""
    return FakeNightscout(
        {SITE: store},
        max_limit=1000,
        api_secret=SECRET,
        tokens=[TOKEN],
        auth_default_roles="readable",
        auth_clock=clock.seconds,
    )


@pytest.fixture
def ns(clock: FakeClock) -> Iterator[FakeNightscout]:
    with open_site(tiny_site(clock), clock) as server:
        yield server


@pytest.fixture
def http(ns: FakeNightscout) -> Iterator[httpx.Client]:
    """A reader with a JWT (v3 wants one even on an open site; v1 accepts it too)."""
    bearer = {"Authorization": f"Bearer {ns.jwt_for(TOKEN)}"}
    with httpx.Client(base_url=ns.site_url(SITE), timeout=10, headers=bearer) as client:
        yield client


@pytest.fixture
def anon(ns: FakeNightscout) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ns.site_url(SITE), timeout=10) as client:
        yield client


@pytest.fixture
def admin(ns: FakeNightscout) -> Iterator[httpx.Client]:
    """An admin with the API secret (v1) and a JWT of an admin subject (v3)."""
    token = ns.create_token("tester", ["admin"])
    headers = {
        "api-secret": hashlib.sha1(SECRET.encode()).hexdigest(),
        "Authorization": f"Bearer {ns.jwt_for(token)}",
    }
    with httpx.Client(base_url=ns.site_url(SITE), timeout=10, headers=headers) as client:
        yield client


def result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["status"] == 200
    return payload["result"]


# --------------------------------------------------------------------------- store


def test_store_server_fields_are_unique_monotonic_and_deterministic(clock: FakeClock) -> None:
    a, b = tiny_site(clock), tiny_site(clock)
    docs_a = a.documents("entries")
    assert [d["_id"] for d in docs_a] == [d["_id"] for d in b.documents("entries")]
    assert all(len(d["_id"]) == 24 and int(d["_id"], 16) >= 0 for d in docs_a)
    # v3 create sets identifier, srvCreated and srvModified, not isValid
    assert all("isValid" not in d and d["srvCreated"] == d["srvModified"] for d in docs_a)
    assert all(d["identifier"] for d in docs_a)
    modified = sorted(d["srvModified"] for d in docs_a)
    assert len(set(modified)) == len(modified), "srvModified must be unique within a collection"
    assert modified[-1] <= clock.ms + len(modified)  # at most 1 ms per doc ahead, like Nightscout
    normal = [d for d in docs_a if isinstance(d.get("date"), int) and d["date"] > 10**12]
    # seeded data looks uploaded live: event time plus a short delay, never after "now"
    assert all(
        0 < d["srvModified"] - d["date"] <= 61_000 for d in normal if d["date"] < T0_MS - MINUTE
    )
    broken = next(d for d in docs_a if d.get("device") == "broken-clock")
    assert broken["srvModified"] >= clock.ms  # broken clocks are stamped when they arrive


def test_store_v1_uploads_get_only_an_id(clock: FakeClock) -> None:
    store = tiny_site(clock, api="v1")
    for collection in ("entries", "treatments", "devicestatus", "profile"):
        docs = store.documents(collection)
        assert docs and all(len(d["_id"]) == 24 for d in docs)
        assert not any(
            {"identifier", "srvCreated", "srvModified", "isValid"} & set(d) for d in docs
        )
    assert store.last_modified()["entries"] == T0_MS  # lastModified falls back to `date`
    loop = store.insert("treatments", [{"_id": "0C3F-UUID", "created_at": iso(T0_MS)}], api="v1")
    assert loop[0]["identifier"] == "0C3F-UUID" and len(loop[0]["_id"]) == 24
    edited = store.edit(
        "treatments", store.documents("treatments")[0]["_id"], {"notes": "x"}, api="v1"
    )
    assert "srvModified" not in edited  # a v1 edit (careportal PUT) leaves no trace for v3
    patched = store.edit("treatments", edited["_id"], {"notes": "y"})
    assert patched["srvModified"] >= clock.ms and "srvCreated" not in patched


def test_store_edit_and_delete_bump_srv_modified(clock: FakeClock) -> None:
    store = tiny_site(clock)
    first = store.documents("treatments")[0]
    last_before = store.last_modified()["treatments"]
    edited = store.edit("treatments", first["identifier"], {"insulin": 9.5})
    assert edited["insulin"] == 9.5 and edited["srvModified"] > last_before
    assert edited["srvCreated"] == first["srvCreated"] and edited["_id"] == first["_id"]
    deleted = store.delete("treatments", first["identifier"])
    assert deleted is not None and deleted["isValid"] is False
    assert deleted["srvModified"] > edited["srvModified"]
    with pytest.raises(ValueError):
        store.edit("treatments", first["identifier"], {"srvModified": 1})
    with pytest.raises(KeyError):
        store.edit("treatments", "nope", {"insulin": 1})


def test_store_upserts_by_identifier_and_deletes_permanently(clock: FakeClock) -> None:
    store = tiny_site(clock)
    doc = {"eventType": "Note", "created_at": iso(T0_MS), "identifier": "aaps-1", "notes": "a"}
    first = store.insert("treatments", [doc])[0]
    again = store.insert("treatments", [{**doc, "notes": "b"}])[0]
    assert again["_id"] == first["_id"] and again["notes"] == "b"
    assert (
        again["srvModified"] > first["srvModified"] and again["srvCreated"] == first["srvCreated"]
    )
    loop = store.insert(
        "treatments",
        [{"_id": "0C3F-UUID-FROM-LOOP", "eventType": "Note", "created_at": iso(T0_MS)}],
    )
    assert loop[0]["identifier"] == "0C3F-UUID-FROM-LOOP" and len(loop[0]["_id"]) == 24
    before = store.count("treatments", include_deleted=True)
    assert store.delete("treatments", "aaps-1", permanent=True) is None
    assert store.count("treatments", include_deleted=True) == before - 1
    assert store.get("treatments", "aaps-1") is None


def test_store_late_upload_gets_current_server_time(clock: FakeClock) -> None:
    store = tiny_site(clock)
    cursor = store.last_modified()["entries"]
    late = store.insert("entries", [{"type": "sgv", "sgv": 150, "date": T0_MS - 3 * 60 * MINUTE}])
    assert late[0]["srvModified"] > cursor  # a history reader past the cursor still sees it


# --------------------------------------------------------------------------- v1


def test_v1_entries_default_count_newest_first(http: httpx.Client, clock: FakeClock) -> None:
    response = http.get("/api/v1/entries.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    docs = response.json()
    assert len(docs) == 10
    dates = [d["date"] for d in docs]
    assert dates == sorted(dates, reverse=True)
    assert docs[0]["_id"] and docs[0]["identifier"] and docs[0]["srvModified"]  # v3-seeded
    assert "stringly" not in {d.get("device") for d in docs}  # a string date never matches $gte
    assert len(http.get("/api/v1/entries", params={"count": 25}).json()) == 25


def test_v1_entries_default_window_is_four_days(http: httpx.Client, clock: FakeClock) -> None:
    docs = http.get("/api/v1/entries.json", params={"count": 100_000}).json()
    oldest = min(d["date"] for d in docs)
    assert oldest >= clock.ms - 4 * 24 * 60 * MINUTE
    older = http.get(
        "/api/v1/entries.json",
        params={"count": 100_000, "find[date][$gte]": 0},
    ).json()
    assert min(d["date"] for d in older) == 5_000  # the 1970 record is there when asked for


def test_v1_entries_find_filters(http: httpx.Client) -> None:
    low, high = T0_MS - 60 * MINUTE, T0_MS - 30 * MINUTE
    docs = http.get(
        "/api/v1/entries.json",
        params={"count": 1000, "find[date][$gte]": low, "find[date][$lt]": high},
    ).json()
    assert docs and all(low <= d["date"] < high for d in docs)
    assert len(docs) == 6  # T0-60 ... T0-35 min, every 5 min
    lte = http.get(
        "/api/v1/entries.json",
        params={"count": 1000, "find[date][$gt]": low, "find[date][$lte]": high},
    ).json()
    assert all(low < d["date"] <= high for d in lte)
    sgv_only = http.get(
        "/api/v1/entries.json",
        params={"count": 50, "find[type]": "sgv", "find[date][$gte]": T0_MS - 30 * MINUTE},
    ).json()
    assert {d["type"] for d in sgv_only} == {"sgv"}
    typed = http.get("/api/v1/entries/mbg.json", params={"find[date][$gte]": 0}).json()
    assert [d["mbg"] for d in typed] == [123]
    ranged = http.get(
        "/api/v1/entries/sgv.json",
        params={"count": 500, "find[sgv][$gte]": "200", "find[date][$gte]": 0},
    ).json()
    assert ranged and all(d["sgv"] >= 200 for d in ranged)
    ne = http.get(
        "/api/v1/entries.json",
        params={"count": 5000, "find[type][$ne]": "sgv", "find[date][$gte]": 0},
    ).json()
    assert {d["type"] for d in ne} == {"mbg"}
    by_id = http.get(f"/api/v1/entries/{ranged[0]['_id']}.json").json()
    assert [d["_id"] for d in by_id] == [ranged[0]["_id"]]


def test_v1_paging_backwards_sees_every_record_once(http: httpx.Client) -> None:
    since = T0_MS - 24 * 60 * MINUTE
    seen: list[str] = []
    upper: int | None = None
    while True:
        params: dict[str, Any] = {"count": 100, "find[date][$gte]": since, "find[type]": "sgv"}
        if upper is not None:
            params["find[date][$lt]"] = upper
        page = http.get("/api/v1/entries.json", params=params).json()
        seen.extend(d["_id"] for d in page)
        if len(page) < 100:
            break
        upper = page[-1]["date"]
    assert len(seen) == len(set(seen)) == 24 * 12 + 1


def test_v1_treatments_created_at_compares_as_time(http: httpx.Client) -> None:
    # +02:00 offset written by a client: the same instant as 10:00Z
    since = (T0 - timedelta(hours=2)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "+00:00"
    local = "2024-06-01T12:00:00+02:00"  # == 10:00Z
    a = http.get("/api/v1/treatments.json", params={"find[created_at][$gte]": since}).json()
    b = http.get("/api/v1/treatments.json", params={"find[created_at][$gte]": local}).json()
    assert [d["_id"] for d in a] == [d["_id"] for d in b]
    assert [d["created_at"] for d in a] == [iso(T0_MS - h * 60 * MINUTE) for h in range(3)]
    # unescaped '+' arrives as a space; Nightscout puts it back
    c = http.get("/api/v1/treatments.json?find[created_at][$gte]=2024-06-01T12:00:00+02:00").json()
    assert len(c) == 3
    default = http.get("/api/v1/treatments.json").json()
    assert len(default) == 4 * 24  # fewer than the default count of 100: the 4-day window
    regex = http.get(
        "/api/v1/treatments.json", params={"find[eventType]": "/correction/i", "count": 3}
    ).json()
    assert len(regex) == 3


def test_v1_devicestatus_profile_and_status(http: httpx.Client, ns: FakeNightscout) -> None:
    statuses = http.get("/api/v1/devicestatus.json").json()
    assert len(statuses) == 10 and statuses[0]["pump"]["reservoir"] == 100
    profiles = http.get("/api/v1/profile.json").json()
    assert len(profiles) == 2 and profiles[0]["startDate"] > profiles[1]["startDate"]
    ns.stores[SITE].insert(
        "profile", [{"startDate": iso(T0_MS - h * 60 * MINUTE), "units": "mmol"} for h in range(12)]
    )
    assert len(http.get("/api/v1/profile.json").json()) == 10  # PROFILES_DEFAULT_COUNT
    assert len(http.get("/api/v1/profile.json", params={"count": 14}).json()) == 14
    assert len(http.get("/api/v1/profile.json", params={"count": 0}).json()) == 14  # limit(0)
    recent = http.get("/api/v1/profiles.json").json()  # list_query: the 4-day window
    assert len(recent) == 10 and all(
        p["startDate"] >= iso(clock_ms(ns) - 4 * 1440 * MINUTE) for p in recent
    )
    current = http.get("/api/v1/profile/current").json()
    assert current["startDate"] == iso(T0_MS)
    status = http.get("/api/v1/status.json").json()
    assert status["apiEnabled"] is True and status["version"].startswith("15.0.")
    assert status["settings"]["units"] == "mg/dl" and status["serverTime"].endswith("Z")


def test_v1_returns_soft_deleted_with_isvalid_false(ns: FakeNightscout, http: httpx.Client) -> None:
    newest = http.get("/api/v1/entries.json", params={"count": 1}).json()[0]
    ns.stores[SITE].edit("entries", newest["identifier"], {"sgv": 222})
    assert http.get("/api/v1/entries.json", params={"count": 1}).json()[0]["sgv"] == 222
    ns.stores[SITE].delete("entries", newest["identifier"])
    after = http.get("/api/v1/entries.json", params={"count": 1}).json()[0]
    assert after["_id"] == newest["_id"] and after["isValid"] is False  # no v1 filter in 15.0.7
    # `find` values are strings: "false" never equals the boolean false
    params = {"find[date][$gte]": 0}
    assert (
        http.get("/api/v1/entries.json", params={**params, "find[isValid]": "false"}).json() == []
    )
    deleted = http.get(
        "/api/v1/entries.json", params={**params, "find[isValid][$exists]": "true"}
    ).json()
    assert [d["_id"] for d in deleted] == [newest["_id"]]


# --------------------------------------------------------------------------- v3


def test_v3_search_wrapping_limit_sort_skip_fields(http: httpx.Client) -> None:
    docs = result(http.get("/api/v3/entries", params={"limit": 5}))
    assert len(docs) == 5 and all("_id" not in d for d in docs)
    assert [d["identifier"] for d in docs] == sorted(d["identifier"] for d in docs)  # default order
    too_many = http.get("/api/v3/entries", params={"limit": 1001})
    assert too_many.status_code == 400
    assert too_many.json() == {"status": 400, "message": "Parameter limit out of tolerance"}
    assert http.get("/api/v3/entries", params={"limit": 0}).status_code == 400
    asc = result(
        http.get(
            "/api/v3/entries", params={"limit": 10, "sort": "date", "date$gte": T0_MS - 60 * MINUTE}
        )
    )
    assert [d["date"] for d in asc] == sorted(d["date"] for d in asc) and asc[0][
        "date"
    ] >= T0_MS - 60 * MINUTE
    desc = result(http.get("/api/v3/entries", params={"limit": 3, "sort$desc": "date"}))
    assert desc[0]["date"] == T0_MS
    skipped = result(
        http.get("/api/v3/entries", params={"limit": 2, "skip": 1, "sort$desc": "date"})
    )
    assert skipped == desc[1:3]
    fields = result(
        http.get("/api/v3/entries", params={"limit": 2, "fields": "date,sgv", "sort$desc": "date"})
    )
    assert all(set(d) <= {"date", "sgv"} for d in fields)
    everything = result(http.get("/api/v3/entries", params={"limit": 1, "fields": "_all"}))
    assert {"identifier", "srvModified", "srvCreated"} <= set(everything[0])
    both = http.get("/api/v3/entries", params={"sort": "date", "sort$desc": "date"})
    assert both.status_code == 400


def test_v3_filters(http: httpx.Client) -> None:
    def search(**params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = result(
            http.get("/api/v3/entries", params={"limit": 1000, **params})
        )
        return found

    recent = search(**{"date$gte": T0_MS - 30 * MINUTE})
    assert recent and all(d["date"] >= T0_MS - 30 * MINUTE for d in recent)
    iso_bound = search(**{"date$gte": iso(T0_MS - 30 * MINUTE)})
    assert {d["identifier"] for d in iso_bound} == {d["identifier"] for d in recent}
    # utils.js parseFilter keeps one condition per field: the later one replaces the first
    both = search(**{"date$gte": T0_MS - 30 * MINUTE, "date$lt": T0_MS})
    assert len(both) > 100 and min(d["date"] for d in both) < T0_MS - 30 * MINUTE
    assert {d["type"] for d in search(type="mbg")} == {"mbg"}
    assert {d["type"] for d in search(**{"type$eq": "mbg"})} == {"mbg"}
    assert all(d.get("type") != "sgv" for d in search(**{"type$ne": "sgv"}))
    assert {d["type"] for d in search(**{"type$in": "mbg|cal"})} == {"mbg"}
    assert all(d["type"] == "sgv" for d in search(**{"type$nin": "mbg|cal", "limit": 50}))
    assert {d["device"] for d in search(**{"device$re": "^broken"})} == {"broken-clock"}
    lows = search(**{"sgv$lt": 85})
    assert lows and all(d["sgv"] < 85 for d in lows)
    assert http.get("/api/v3/entries", params={"sgv$foo": 1}).status_code == 400
    nested = result(http.get("/api/v3/devicestatus", params={"pump.reservoir$gte": 98}))
    assert sorted(d["pump"]["reservoir"] for d in nested) == [98, 99, 100]
    treatments = result(
        http.get(
            "/api/v3/treatments",
            params={"created_at$gte": iso(T0_MS - 60 * MINUTE), "sort": "created_at"},
        )
    )
    assert [d["created_at"] for d in treatments] == [iso(T0_MS - 60 * MINUTE), iso(T0_MS)]


def test_v3_read_one(ns: FakeNightscout, http: httpx.Client) -> None:
    doc = result(http.get("/api/v3/treatments", params={"limit": 1}))[0]
    one = http.get(f"/api/v3/treatments/{doc['identifier']}")
    assert result(one) == doc and "last-modified" in one.headers
    missing = http.get("/api/v3/treatments/does-not-exist")
    assert missing.status_code == 404 and missing.json() == {"status": 404}
    ns.stores[SITE].delete("treatments", doc["identifier"])
    assert http.get(f"/api/v3/treatments/{doc['identifier']}").json() == {"status": 410}
    assert http.get("/api/v3/nonsense").status_code == 404


def test_v3_history_is_strict_ordered_and_includes_deletions(
    ns: FakeNightscout, http: httpx.Client, clock: FakeClock
) -> None:
    everything: list[dict[str, Any]] = []
    cursor = parse_v3_time("946684800000")
    assert cursor == 946_684_800_000
    while True:
        page = http.get(f"/api/v3/treatments/history/{cursor}", params={"limit": 50})
        docs = result(page)
        if not docs:
            break
        modified = [d["srvModified"] for d in docs]
        assert modified == sorted(modified) and min(modified) > cursor
        assert page.headers["etag"] == f'W/"{max(modified)}"'
        assert page.headers["last-modified"].endswith("GMT")
        everything.extend(docs)
        cursor = max(modified)
    assert len(everything) == len({d["identifier"] for d in everything}) == 6 * 24

    store = ns.stores[SITE]
    clock.advance(MINUTE)
    victim, edited = everything[0]["identifier"], everything[1]["identifier"]
    store.delete("treatments", victim)
    store.edit("treatments", edited, {"notes": "fixed"})
    changes = result(http.get(f"/api/v3/treatments/history/{cursor}"))
    assert [(d["identifier"], d.get("isValid")) for d in changes] == [
        (victim, False),
        (edited, None),  # v3 never writes isValid: true
    ]
    assert changes[1]["notes"] == "fixed"
    exact = changes[0]["srvModified"]
    assert [d["identifier"] for d in result(http.get(f"/api/v3/treatments/history/{exact}"))] == [
        edited
    ]
    # header form is >= (whole seconds)
    by_header = http.get(
        "/api/v3/treatments/history",
        headers={
            "Last-Modified": datetime.fromtimestamp(exact / 1000, UTC).strftime(
                "%a, %d %b %Y %H:%M:%S GMT"
            )
        },
    )
    assert {d["identifier"] for d in result(by_header)} >= {victim, edited}
    # search no longer shows the deleted one
    assert victim not in {
        d["identifier"] for d in result(http.get("/api/v3/treatments", params={"limit": 1000}))
    }


def test_v3_history_cursor_must_be_a_time(http: httpx.Client) -> None:
    for bad in ("0", "1", "abc", "-5"):
        response = http.get(f"/api/v3/entries/history/{bad}")
        assert response.status_code == 400, bad
        assert response.json()["message"] == "Bad or missing Last-Modified header/parameter"
    assert http.get("/api/v3/entries/history").status_code == 400  # no header either
    seconds = result(http.get(f"/api/v3/entries/history/{T0_MS // 1000}", params={"limit": 3}))
    millis = result(
        http.get(f"/api/v3/entries/history/{T0_MS // 1000 * 1000}", params={"limit": 3})
    )
    assert seconds == millis
    assert (
        http.get("/api/v3/entries/history/946684800000", params={"limit": 1001}).status_code == 400
    )


def test_v3_last_modified_version_status(
    ns: FakeNightscout, http: httpx.Client, clock: FakeClock
) -> None:
    info = result(http.get("/api/v3/lastModified"))
    assert info["srvDate"] == clock.ms
    store = ns.stores[SITE]
    assert info["collections"] == store.last_modified()
    assert set(info["collections"]) == {"entries", "treatments", "devicestatus", "profile"}
    version = result(http.get("/api/v3/version"))
    assert version["version"] == "15.0.7" and version["apiVersion"] == "3.0.3-alpha"
    status = result(http.get("/api/v3/status"))
    assert (
        status["apiPermissions"]["entries"] == "r" and status["apiPermissions"]["settings"] == "r"
    )


def test_v3_disabled_is_404_but_v1_works(clock: FakeClock) -> None:
    with FakeNightscout({SITE: tiny_site(clock)}, v3_enabled=False) as old:
        url = old.site_url(SITE)
        for path in (
            "/api/v3/version",
            "/api/v3/entries",
            "/api/v3/lastModified",
            "/api/v3/entries/history/1700000000000",
        ):
            assert httpx.get(url + path).status_code == 404
        assert httpx.get(url + "/api/v1/entries.json").status_code == 200


# --------------------------------------------------------------------------- auth


@pytest.fixture
def locked(clock: FakeClock) -> Iterator[FakeNightscout]:
    with FakeNightscout(
        {SITE: tiny_site(clock)},
        api_secret=SECRET,
        tokens=[TOKEN],
        jwt_lifetime_seconds=60,
        auth_clock=clock.seconds,
    ) as server:
        yield server


def test_open_site_reads_v1_without_auth_but_v3_wants_a_jwt(anon: httpx.Client) -> None:
    assert anon.get("/api/v1/entries.json").status_code == 200
    assert anon.get("/api/v1/status.json").status_code == 200
    refused = anon.get("/api/v3/entries")
    assert refused.status_code == 401
    assert refused.json() == {"status": 401, "message": "Missing or bad access token or JWT"}
    assert anon.get("/api/v3/entries", params={"token": TOKEN}).status_code == 401
    assert (
        anon.get("/api/v3/entries", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    )
    assert anon.get("/api/v3/version").status_code == 200


def test_locked_site_refuses_and_accepts(locked: FakeNightscout) -> None:
    url = locked.site_url(SITE)
    denied = httpx.get(url + "/api/v1/entries.json")
    assert denied.status_code == 401 and denied.json()["status"] == 401
    assert denied.json()["message"] == "Unauthorized"
    assert httpx.get(url + "/api/v1/status.json").status_code == 401
    assert httpx.get(url + "/api/v3/entries").status_code == 401
    assert httpx.get(url + "/api/v3/version").status_code == 200  # public, as in Nightscout
    sha1 = hashlib.sha1(SECRET.encode()).hexdigest()
    assert httpx.get(url + "/api/v1/entries.json", headers={"api-secret": sha1}).status_code == 200
    assert (
        httpx.get(url + "/api/v1/entries.json", headers={"api-secret": sha1.upper()}).status_code
        == 200
    )
    assert (
        httpx.get(url + "/api/v1/entries.json", headers={"api-secret": SECRET}).status_code == 401
    )
    assert httpx.get(url + "/api/v1/entries.json", params={"token": TOKEN}).status_code == 200
    assert (
        httpx.get(url + "/api/v1/entries.json", params={"token": "reader-bad"}).status_code == 401
    )
    # api-secret does not open v3 (it wants a JWT or access token)
    assert httpx.get(url + "/api/v3/entries", headers={"api-secret": sha1}).status_code == 401


def test_jwt_exchange_and_expiry(locked: FakeNightscout, clock: FakeClock) -> None:
    url = locked.site_url(SITE)
    assert httpx.get(url + "/api/v2/authorization/request/not-a-token").status_code == 401
    grant = httpx.get(url + f"/api/v2/authorization/request/{TOKEN}")
    assert grant.status_code == 200
    body = grant.json()
    assert body["sub"] == "reader" and body["exp"] - body["iat"] == 60
    assert TOKEN not in grant.text  # the access token is not echoed (the JWT is opaque)
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert httpx.get(url + "/api/v3/entries", headers=bearer).status_code == 200
    assert httpx.get(url + "/api/v1/entries.json", headers=bearer).status_code == 200
    assert (
        httpx.get(url + "/api/v3/entries", headers={"Authorization": "Bearer garbage"}).status_code
        == 401
    )
    clock.advance(61_000)
    expired = httpx.get(url + "/api/v3/entries", headers=bearer)
    assert expired.status_code == 401 and expired.json()["status"] == 401
    fresh = httpx.get(url + f"/api/v2/authorization/request/{TOKEN}").json()["token"]
    assert (
        httpx.get(url + "/api/v3/entries", headers={"Authorization": f"Bearer {fresh}"}).status_code
        == 200
    )


def test_secrets_are_not_recorded(locked: FakeNightscout) -> None:
    url = locked.site_url(SITE)
    httpx.get(url + "/api/v1/entries.json", params={"token": TOKEN})
    httpx.get(url + f"/api/v2/authorization/request/{TOKEN}")
    recorded = json.dumps([r.__dict__ for r in locked.requests])
    assert TOKEN not in recorded and "<redacted>" in recorded


# --------------------------------------------------------------------------- faults


def test_fault_kinds_seen_by_a_client(ns: FakeNightscout, http: httpx.Client) -> None:
    path = "/api/v1/entries.json"
    ns.inject("429")
    limited = http.get(path)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    ns.inject("500")
    assert http.get(path).status_code == 500
    ns.inject("503")
    assert http.get(path).status_code == 503
    ns.inject("malformed_json")
    broken = http.get(path)
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.content)
    ns.inject("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(path)
    ns.inject("truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(path)
    ns.inject("slow", delay_seconds=0.3)
    started = time.perf_counter()
    assert http.get(path).status_code == 200
    assert time.perf_counter() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        ns.inject("slow", delay_seconds=0.5)
        http.get(path, timeout=0.1)
    # the server is still answering the timed-out request: wait until it has recorded it
    assert ns.wait_for_requests(lambda requests: sum(r.fault == "slow" for r in requests) == 2)
    assert http.get(path).status_code == 200  # faults are used up; the client recovers
    faults = [r.fault for r in ns.requests if r.fault]
    assert faults == ["429", "500", "503", "malformed_json", "drop", "truncate", "slow", "slow"]
    assert [r.status for r in ns.requests if r.fault == "drop"] == [0]


def test_fault_targeting_and_counts(ns: FakeNightscout, http: httpx.Client) -> None:
    ns.inject("503", times=2, path_contains="/api/v3/")
    assert http.get("/api/v1/entries.json").status_code == 200
    assert http.get("/api/v3/entries").status_code == 503
    assert http.get("/api/v3/entries").status_code == 503
    assert http.get("/api/v3/entries").status_code == 200


def test_random_faults_are_seeded(clock: FakeClock) -> None:
    def run() -> list[int]:
        with FakeNightscout({SITE: tiny_site(clock)}) as server:
            server.set_random_faults(0.5, ["500", "429"], seed=7)
            with httpx.Client(base_url=server.site_url(SITE)) as client:
                return [client.get("/api/v1/status.json").status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second and {200, 500, 429} == set(first)


def test_concurrency_is_measured(ns: FakeNightscout) -> None:
    ns.inject("slow", times=4, delay_seconds=0.3)
    url = ns.site_url(SITE) + "/api/v1/entries.json"
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: httpx.get(url).status_code, range(4)))
    assert statuses == [200] * 4
    assert ns.max_concurrent_seen == 4 and ns.max_concurrent_by_site[SITE] == 4


def test_keep_alive_reuses_one_connection(ns: FakeNightscout, http: httpx.Client) -> None:
    for _ in range(5):
        assert http.get("/api/v1/entries.json").status_code == 200
    assert len(ns._connections) == 1


# --------------------------------------------------------------------------- admin


def test_admin_endpoints(ns: FakeNightscout, http: httpx.Client, clock: FakeClock) -> None:
    admin = ns.base_url + "/__admin"
    sites = httpx.get(admin + "/sites").json()["sites"]
    assert sites == {SITE: ns.site_url(SITE)}
    inserted = httpx.post(
        f"{admin}/{SITE}/treatments/insert",
        json=[{"eventType": "Note", "notes": "hello", "created_at": iso(clock.ms)}],
    ).json()["result"]
    identifier = inserted[0]["identifier"]
    assert result(http.get(f"/api/v3/treatments/{identifier}"))["notes"] == "hello"
    edit = httpx.post(
        f"{admin}/{SITE}/treatments/edit",
        json={"identifier": identifier, "changes": {"notes": "bye"}},
    )
    assert edit.status_code == 200 and edit.json()["result"]["notes"] == "bye"
    assert result(http.get(f"/api/v3/treatments/{identifier}"))["notes"] == "bye"
    assert (
        httpx.post(f"{admin}/{SITE}/treatments/delete", json={"identifier": identifier}).status_code
        == 200
    )
    assert http.get(f"/api/v3/treatments/{identifier}").status_code == 410
    assert (
        httpx.post(f"{admin}/{SITE}/treatments/delete", json={"identifier": "nope"}).status_code
        == 404
    )
    fault = httpx.post(
        admin + "/faults", json={"kind": "503", "times": 1, "path_contains": "status"}
    )
    assert fault.status_code == 200
    assert http.get("/api/v1/status.json").status_code == 503
    assert http.get("/api/v1/status.json").status_code == 200
    assert httpx.post(admin + "/faults", json={"kind": "explode"}).status_code == 400
    assert (
        httpx.post(admin + "/faults/random", json={"rate": 1.0, "kinds": ["500"]}).status_code
        == 200
    )
    assert http.get("/api/v1/status.json").status_code == 500
    assert httpx.delete(admin + "/faults").status_code == 200
    assert http.get("/api/v1/status.json").status_code == 200
    assert httpx.get(admin + "/stats").json()["requests"] == len(ns.requests)


def test_unknown_site_and_route(ns: FakeNightscout) -> None:
    assert httpx.get(ns.base_url + "/nobody/api/v1/entries.json").status_code == 404
    assert httpx.get(ns.site_url(SITE) + "/api/v1/nothing.json").status_code == 404
    # anonymous may read here, not write (AUTH_DEFAULT_ROLES=readable)
    assert httpx.post(ns.site_url(SITE) + "/api/v1/entries.json", json=[]).status_code == 401
    assert httpx.put(ns.site_url(SITE) + "/api/v1/entries.json", json=[]).status_code == 404


# --------------------------------------------------------------------------- synthetic


def test_synthetic_sites_serve_generated_data() -> None:
    synthetic = pytest.importorskip("cascade_dev.fake_nightscout.synthetic")
    if not hasattr(synthetic, "generate_subject"):
        pytest.skip("synthetic generator not available yet")
    with FakeNightscout.synthetic(subjects=2, days=1, seed=3, tokens=[TOKEN]) as server:
        assert server.site_ids == ["subject-01", "subject-02"]
        bearer = {"Authorization": f"Bearer {server.jwt_for(TOKEN)}"}
        for site_id in server.site_ids:
            url = server.site_url(site_id)
            entries = httpx.get(url + "/api/v1/entries.json", headers=bearer).json()
            assert len(entries) == 10 and "srvModified" not in entries[0]  # uploaded via v1
            history = httpx.get(url + "/api/v3/entries/history/946684800000", headers=bearer)
            assert history.json() == {"status": 200, "result": []}
            searched = httpx.get(url + "/api/v3/entries", params={"limit": 3}, headers=bearer)
            assert all(
                d["identifier"] == d["identifier"].lower() for d in searched.json()["result"]
            )
    with FakeNightscout.synthetic(
        subjects=1, days=1, seed=3, uploaded_through="v3", tokens=[TOKEN]
    ) as server:
        bearer = {"Authorization": f"Bearer {server.jwt_for(TOKEN)}"}
        url = server.site_url("subject-01")
        history = httpx.get(url + "/api/v3/entries/history/946684800000", headers=bearer)
        assert history.json()["result"]


def clock_ms(ns: FakeNightscout) -> int:
    return ns.stores[SITE].now_ms()


def test_server_threads_shut_down(clock: FakeClock) -> None:
    before = threading.active_count()
    server = FakeNightscout({SITE: tiny_site(clock)}).start()
    with httpx.Client(base_url=server.site_url(SITE)) as client:
        client.get("/api/v1/entries.json")
        server.stop()  # joins every thread it started
    assert threading.active_count() <= before


# --------------------------------------------------------------------------- v1 writes


def test_v1_uploads_run_the_real_create_pipeline(
    ns: FakeNightscout, admin: httpx.Client, http: httpx.Client
) -> None:
    local = "2024-06-01T14:00:00+02:00"  # 12:00Z (tiny_site has a Correction Bolus there)
    first = admin.post(
        "/api/v1/treatments",
        json={"eventType": "Meal Bolus", "created_at": local, "insulin": "2.5", "notes": ""},
    )
    assert first.status_code == 200
    [made] = first.json()
    assert made["created_at"] == iso(T0_MS) and made["utcOffset"] == 120
    assert made["insulin"] == 2.5 and "notes" not in made and "carbs" not in made
    assert not {"identifier", "srvModified", "srvCreated", "isValid"} & set(made)
    # the same created_at and eventType again: replaced, answered without _id (treatments.js)
    again = admin.post(
        "/api/v1/treatments",
        json=[{"eventType": "Meal Bolus", "created_at": iso(T0_MS), "insulin": 3}],
    ).json()
    assert "_id" not in again[0]
    stored = ns.stores[SITE].get("treatments", made["_id"])
    assert stored is not None and stored["insulin"] == 3 and "utcOffset" in stored
    # v1 reads pass carbs/insulin through Number(): a missing one reads as null
    read = http.get("/api/v1/treatments.json", params={"find[_id]": made["_id"]}).json()
    assert read[0]["insulin"] == 3 and read[0]["carbs"] is None
    loop = admin.post(
        "/api/v1/treatments",
        json=[
            {
                "_id": "6F3A2B10-0000-4000-8000-00000000AAAA",
                "eventType": "Note",
                "created_at": iso(T0_MS),
            }
        ],
    ).json()
    assert loop[0]["identifier"] == "6F3A2B10-0000-4000-8000-00000000AAAA"  # UUID_HANDLING

    entry = {"type": "sgv", "sgv": 100, "date": T0_MS, "dateString": "2024-06-01T13:00:00+01:00"}
    [posted] = admin.post("/api/v1/entries", json=entry).json()
    assert posted["sysTime"] == iso(T0_MS) and posted["utcOffset"] == 60
    assert posted["dateString"] == iso(T0_MS)
    merged = admin.post("/api/v1/entries", json=[{**entry, "sgv": 101}]).json()
    assert "_id" not in merged[0]  # upserted on {sysTime, type} into the stored entry
    same = ns.stores[SITE].get("entries", posted["_id"])
    assert same is not None and same["sgv"] == 101

    bad_id = admin.post("/api/v1/devicestatus", json=[{"_id": "nope", "device": "x"}])
    assert bad_id.status_code == 400 and bad_id.json()["message"] == "Invalid _id format"
    status = admin.post("/api/v1/devicestatus", json={"device": "x", "created_at": local}).json()
    assert status[0]["created_at"] == iso(T0_MS)
    assert admin.delete(f"/api/v1/devicestatus/{status[0]['_id']}").json()["deletedCount"] == 1
    assert ns.stores[SITE].get("devicestatus", status[0]["_id"]) is None
    # a reader token may read, not write
    assert http.post("/api/v1/treatments", json=[]).status_code == 401


def test_v1_query_errors_answer_as_nightscout_does(http: httpx.Client) -> None:
    # query.js walks a plain created_at value char by char and throws on "-"; the
    # treatments route then sends its null result
    eq = http.get("/api/v1/treatments.json", params={"find[created_at]": iso(T0_MS)})
    assert eq.status_code == 200 and eq.content == b"null"
    garbage = http.get("/api/v1/treatments.json", params={"find[created_at][$gte]": "soon"})
    assert garbage.content == b"null"
    entries = http.get("/api/v1/entries.json", params={"find[date][$gte]": "abc"})
    assert entries.status_code == 500 and entries.json()["message"] == "Mongo Error"
    unknown = http.get("/api/v1/entries.json", params={"find[sgv][$near]": "1"})
    assert unknown.status_code == 500
    missing = http.get("/api/v1/entries/0123456789abcdef01234567.json")
    assert missing.status_code == 500 and "No such id" in missing.json()["description"]


def test_count_endpoint(http: httpx.Client, ns: FakeNightscout) -> None:
    def count(storage: str, **params: Any) -> Any:
        response = http.get(f"/api/v1/count/{storage}/where", params=params)
        assert response.status_code == 200
        return response.json()

    everything = ns.stores[SITE].count("entries")
    numeric = everything - 2  # the undated and the string-dated entry
    assert count("entries", **{"find[date][$gte]": 0}) == [{"_id": None, "count": numeric}]
    assert count("entries") == []  # date >= "<ISO string>" matches no number
    assert count("entries", **{"find[type]": "mbg", "find[date][$gte]": 0}) == [
        {"_id": None, "count": 1}
    ]
    treatments = ns.stores[SITE].count("treatments")
    assert count("treatments") == []
    assert count("treatments", **{"find[created_at][$gte]": "1970-01-01T00:00:00.000Z"}) == []
    every = {"find[_id][$ne]": "0" * 24}
    assert count("treatments", **every) == [{"_id": None, "count": treatments}]
    assert count("treatments", **{"find[_id][$exists]": "false"}) == [
        {"_id": None, "count": treatments}  # any string is true for $exists
    ]
    assert count("devicestatus", **every) == [{"_id": None, "count": 50}]
    assert count("entries", **every) == [{"_id": None, "count": everything}]
    assert count("nonsense", **{"find[date][$gte]": 0}) == count(
        "entries", **{"find[date][$gte]": 0}
    )
    predicates = build_v1_query({}, COUNT_QUERY_OPTIONS, 10**12)
    assert [(p.path, p.op, p.value) for p in predicates] == [
        ("date", "gte", iso(10**12 - 4 * 24 * 60 * MINUTE))
    ]


# --------------------------------------------------------------------------- v3 writes


def test_v3_create_dedup_patch_update_delete(
    ns: FakeNightscout, admin: httpx.Client, http: httpx.Client
) -> None:
    note = {"eventType": "Note", "date": T0_MS, "utcOffset": 0, "app": "t", "device": "d"}
    created = admin.post("/api/v3/treatments", json=note)
    assert created.status_code == 201 and created.headers["location"].endswith(
        created.json()["identifier"]
    )
    identifier = created.json()["identifier"]
    stored = ns.stores[SITE].get("treatments", identifier)
    assert stored is not None and stored["subject"] == "tester"
    assert stored["created_at"] == iso(T0_MS) and "isValid" not in stored
    again = admin.post("/api/v3/treatments", json=note)  # same identifier: replaced
    assert again.status_code == 200 and again.json()["isDeduplication"] is True

    # a v3 create matching a v1 upload on created_at + eventType would take it over, but
    # the upload has no `date` (nor `app`), which replace.js may not change: refused
    [v1] = admin.post(
        "/api/v1/treatments", json=[{"eventType": "Meal Bolus", "created_at": iso(T0_MS - MINUTE)}]
    ).json()
    takeover = admin.post(
        "/api/v3/treatments",
        json={"eventType": "Meal Bolus", "date": T0_MS - MINUTE, "utcOffset": 0, "app": "t"},
    )
    assert takeover.json() == {
        "status": 400,
        "message": "Field date cannot be modified by the client",
    }
    untouched = ns.stores[SITE].get("treatments", v1["_id"])
    assert untouched is not None and "identifier" not in untouched

    assert admin.post("/api/v3/treatments", json={**note, "date": T0_MS + 1, "app": " "}).json()[
        "message"
    ] == ("Bad or missing app field")
    denied = http.post("/api/v3/treatments", json={**note, "date": T0_MS + 2})
    assert denied.status_code == 403
    assert denied.json()["message"] == "Missing permission api:treatments:create"

    immutable = admin.patch(f"/api/v3/treatments/{identifier}", json={"eventType": "Other"})
    assert immutable.json() == {
        "status": 400,
        "message": "Field eventType cannot be modified by the client",
    }
    assert admin.patch("/api/v3/treatments/nope", json={"notes": "x"}).json() == {"status": 404}
    patched = admin.patch(f"/api/v3/treatments/{identifier}", json={"duration": 30})
    assert patched.json() == {"status": 200}
    after = ns.stores[SITE].get("treatments", identifier)
    assert after is not None and after["modifiedBy"] == "tester"
    assert after["endmills"] == T0_MS + 30 * MINUTE  # lib/treatmentDuration.js

    put = admin.put(
        "/api/v3/treatments/brand-new", json={"eventType": "Note", "date": T0_MS, "app": "t"}
    )
    assert put.status_code == 201 and put.json()["identifier"] == "brand-new"

    assert admin.delete(f"/api/v3/treatments/{identifier}").json() == {"status": 200}
    assert http.get(f"/api/v3/treatments/{identifier}").json() == {"status": 410}
    assert admin.patch(f"/api/v3/treatments/{identifier}", json={"notes": "x"}).json() == {
        "status": 410
    }
    assert admin.delete(
        f"/api/v3/treatments/{identifier}", params={"permanent": "true"}
    ).json() == {"status": 200}
    assert admin.delete(f"/api/v3/treatments/{identifier}").json() == {"status": 404}


# --------------------------------------------------------------------------- auth details


def test_v1_auth_follows_resolve(ns: FakeNightscout, anon: httpx.Client) -> None:
    entries = "/api/v1/entries.json"
    # failed credentials are refused even where anonymous reads are allowed
    assert anon.get(entries, headers={"api-secret": "0" * 40}).status_code == 401
    assert anon.get(entries, headers={"Authorization": "Bearer garbage"}).status_code == 401
    # an unknown ?token= is no credential at all: the default roles apply
    assert anon.get(entries, params={"token": "nobody-0000000000000000"}).status_code == 200
    sha512 = hashlib.sha512(SECRET.encode()).hexdigest()
    assert anon.get(entries, headers={"api-secret": sha512}).status_code == 200
    assert (
        anon.post(
            "/api/v1/treatments",
            params={"secret": hashlib.sha1(SECRET.encode()).hexdigest()},
            json=[],
        ).status_code
        == 200
    )


def test_locked_site_subjects_and_roles(clock: FakeClock) -> None:
    with FakeNightscout(
        {SITE: tiny_site(clock)}, api_secret=SECRET, auth_clock=clock.seconds
    ) as locked:
        assert not locked.open
        url = locked.site_url(SITE)
        secret = {"api-secret": hashlib.sha1(SECRET.encode()).hexdigest()}
        made = httpx.post(
            url + "/api/v2/authorization/subjects",
            json={"name": "Care Portal!", "roles": ["careportal"]},
            headers=secret,
        )
        assert made.status_code == 200 and len(made.json()["_id"]) == 24
        assert httpx.get(url + "/api/v2/authorization/subjects").status_code == 401
        [subject] = httpx.get(url + "/api/v2/authorization/subjects", headers=secret).json()
        token = subject["accessToken"]
        assert token.startswith("careportal-") and len(token) == len("careportal-") + 16
        # an access token also works in place of the API secret
        as_secret = httpx.post(url + "/api/v1/treatments", json=[], headers={"api-secret": token})
        assert as_secret.status_code == 401  # careportal may create, but not read first
        grant = httpx.get(url + f"/api/v2/authorization/request/{token}").json()
        assert grant["permissionGroups"] == [["api:treatments:create"], []]
        bearer = {"Authorization": f"Bearer {grant['token']}"}
        refused = httpx.get(url + "/api/v3/treatments", headers=bearer)
        assert refused.status_code == 403
        assert refused.json()["message"] == "Missing permission api:treatments:read"
        assert httpx.get(url + "/api/v1/verifyauth").json()["message"]["canRead"] is False


def test_api3_security_can_be_switched_off(clock: FakeClock) -> None:
    with FakeNightscout({SITE: tiny_site(clock)}, api3_security=False) as insecure:
        assert httpx.get(insecure.site_url(SITE) + "/api/v3/entries").status_code == 200
