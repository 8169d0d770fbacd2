"""The fake Nightscout over real HTTP: v1, v3, auth, faults and admin, as a reader sees them."""

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

from cascade.source.fake import FakeNightscout, SiteStore
from cascade.source.fake.server import parse_v3_time

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


def tiny_site(clock: FakeClock, *, days: int = 6) -> SiteStore:
    """A small deterministic site: 5-min CGM for `days` days, hourly boluses, profiles,
    plus the dirt a reader must survive (a 1970 clock, a missing date, a string date)."""
    store = SiteStore(SITE, clock=clock)
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


@pytest.fixture
def ns(clock: FakeClock) -> Iterator[FakeNightscout]:
    with FakeNightscout({SITE: tiny_site(clock)}, max_limit=1000) as server:
        yield server


@pytest.fixture
def http(ns: FakeNightscout) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ns.site_url(SITE), timeout=10) as client:
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
    assert all(d["isValid"] is True and d["srvCreated"] == d["srvModified"] for d in docs_a)
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
    assert docs[0]["_id"] and docs[0]["identifier"] and docs[0]["srvModified"]
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


def test_v1_devicestatus_profile_and_status(http: httpx.Client) -> None:
    statuses = http.get("/api/v1/devicestatus.json").json()
    assert len(statuses) == 10 and statuses[0]["pump"]["reservoir"] == 100
    profiles = http.get("/api/v1/profile.json").json()
    assert len(profiles) == 2 and profiles[0]["startDate"] > profiles[1]["startDate"]
    status = http.get("/api/v1/status.json").json()
    assert status["apiEnabled"] is True and status["version"].startswith("15.0.")
    assert status["settings"]["units"] == "mg/dl" and status["serverTime"].endswith("Z")


def test_v1_hides_soft_deleted_and_sees_edits(ns: FakeNightscout, http: httpx.Client) -> None:
    newest = http.get("/api/v1/entries.json", params={"count": 1}).json()[0]
    ns.stores[SITE].edit("entries", newest["identifier"], {"sgv": 222})
    assert http.get("/api/v1/entries.json", params={"count": 1}).json()[0]["sgv"] == 222
    ns.stores[SITE].delete("entries", newest["identifier"])
    after = http.get("/api/v1/entries.json", params={"count": 1}).json()[0]
    assert after["_id"] != newest["_id"]
    deleted = http.get(
        "/api/v1/entries.json", params={"find[isValid]": "false", "find[date][$gte]": 0}
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
    assert {"identifier", "srvModified", "srvCreated", "isValid"} <= set(everything[0])
    both = http.get("/api/v3/entries", params={"sort": "date", "sort$desc": "date"})
    assert both.status_code == 400


def test_v3_filters(http: httpx.Client) -> None:
    def search(**params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = result(
            http.get("/api/v3/entries", params={"limit": 1000, **params})
        )
        return found

    recent = search(**{"date$gte": T0_MS - 30 * MINUTE, "date$lt": T0_MS})
    assert recent and all(T0_MS - 30 * MINUTE <= d["date"] < T0_MS for d in recent)
    iso_bound = search(**{"date$gte": iso(T0_MS - 30 * MINUTE), "date$lt": iso(T0_MS)})
    assert {d["identifier"] for d in iso_bound} == {d["identifier"] for d in recent}
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
    assert http.get("/api/v3/treatments/does-not-exist").status_code == 404
    ns.stores[SITE].delete("treatments", doc["identifier"])
    assert http.get(f"/api/v3/treatments/{doc['identifier']}").status_code == 410
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
    assert [(d["identifier"], d["isValid"]) for d in changes] == [(victim, False), (edited, True)]
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
    assert version["version"].startswith("15.0.") and version["apiVersion"].startswith("3.")
    status = result(http.get("/api/v3/status"))
    assert status["apiPermissions"]["entries"] == "r"


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


def test_open_site_reads_without_auth(http: httpx.Client) -> None:
    assert http.get("/api/v1/entries.json").status_code == 200
    assert http.get("/api/v3/entries").status_code == 200
    assert http.get("/api/v1/status.json").status_code == 200


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
    time.sleep(0.5)
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
    assert httpx.post(ns.site_url(SITE) + "/api/v1/entries.json", json=[]).status_code == 405


# --------------------------------------------------------------------------- synthetic


def test_synthetic_sites_serve_generated_data() -> None:
    synthetic = pytest.importorskip("cascade.source.fake.synthetic")
    if not hasattr(synthetic, "generate_subject"):
        pytest.skip("synthetic generator not available yet")
    with FakeNightscout.synthetic(subjects=2, days=1, seed=3) as server:
        assert server.site_ids == ["subject-01", "subject-02"]
        for site_id in server.site_ids:
            entries = httpx.get(server.site_url(site_id) + "/api/v1/entries.json").json()
            assert len(entries) == 10
            history = httpx.get(
                server.site_url(site_id) + "/api/v3/entries/history/946684800000"
            ).json()
            assert history["status"] == 200 and history["result"]


def test_server_threads_shut_down(clock: FakeClock) -> None:
    before = threading.active_count()
    server = FakeNightscout({SITE: tiny_site(clock)}).start()
    with httpx.Client(base_url=server.site_url(SITE)) as client:
        client.get("/api/v1/entries.json")
        server.stop()
    time.sleep(0.2)
    assert threading.active_count() <= before + 1
