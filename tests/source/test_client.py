"""The Nightscout client: paging boundaries, auth and JWT renewal, retries, secrets kept out of logs."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from cascade.config import SiteConfig
from cascade.exceptions import NightscoutAuthError, NightscoutUnavailableError, PagingError
from cascade.source.nightscout.client import (
    HISTORY_START_MS,
    ApiNotFoundError,
    NightscoutClient,
    V3Access,
)
from cascade.source.nightscout.collections import DEVICESTATUS, ENTRIES, PROFILE, TREATMENTS
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.store import SiteStore

NOW_MS = int(datetime.now(UTC).timestamp() * 1000) - 3_600_000


def _ids(pages: Any) -> list[str]:
    return [d.get("identifier") or d["_id"] for page in pages for d in page.docs]


def _site(docs: list[dict[str, Any]]) -> FakeNightscout:
    store = SiteStore("s")
    store.insert("entries", docs)
    return FakeNightscout({"s": store})


def _sgv(date: int, i: int) -> dict[str, Any]:
    return {"type": "sgv", "sgv": 100 + i, "date": date, "device": f"uploader-{i}"}


def test_v1_page_cut_inside_records_sharing_a_time_skips_and_repeats_nothing() -> None:
    newer = [_sgv(NOW_MS + 60_000 * (i + 1), i) for i in range(5)]
    crowd = [_sgv(NOW_MS, i) for i in range(7)]  # the first page ends in the middle of these
    older = [_sgv(NOW_MS - 300_000 * (i + 1), i) for i in range(30)]
    with _site(newer + crowd + older).start() as ns:
        client = NightscoutClient(SiteConfig(id="s", url=ns.site_url("s")), page_size=10)
        ids = _ids(client.v1_pages(ENTRIES))
        assert len(ids) == 42 and len(set(ids)) == 42
        assert {int(r.query["count"]) for r in ns.requests} == {10}  # bounded, never grown


def test_v1_page_grows_only_while_a_crowd_outnumbers_it() -> None:
    crowd = [_sgv(NOW_MS, i) for i in range(25)]
    older = [_sgv(NOW_MS - 300_000 * (i + 1), i) for i in range(30)]
    with _site(crowd + older).start() as ns:
        client = NightscoutClient(SiteConfig(id="s", url=ns.site_url("s")), page_size=10)
        ids = _ids(client.v1_pages(ENTRIES))
        assert len(ids) == 55 and len(set(ids)) == 55
        assert max(int(r.query["count"]) for r in ns.requests) <= 80
        client = NightscoutClient(SiteConfig(id="s", url=ns.site_url("s")), page_size=2)
        with pytest.raises(PagingError, match="share the time"):  # 25 > 8 x 2: give up, don't skip
            list(client.v1_pages(ENTRIES))


def _history_server(docs: list[dict[str, Any]], limit_cap: int = 1000) -> httpx.MockTransport:
    """Nightscout's history semantics: srvModified strictly greater than the path value, ascending."""

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.url.path.rsplit("/", 1)[1])
        limit = int(parse_qs(urlparse(str(request.url)).query)["limit"][0])
        if limit > limit_cap:
            return httpx.Response(
                400, json={"status": 400, "message": "Parameter limit out of tolerance"}
            )
        result = sorted(
            (d for d in docs if d["srvModified"] > after), key=lambda d: d["srvModified"]
        )[:limit]
        return httpx.Response(200, json={"status": 200, "result": result})

    return httpx.MockTransport(handler)


def test_v3_history_paging_survives_equal_srv_modified_at_page_cuts() -> None:
    base = HISTORY_START_MS + 10_000
    # 7 documents written in the same millisecond, surrounded by others
    docs = [
        {"identifier": f"d{i}", "srvModified": base + (i if i < 5 else 5 if i < 12 else i)}
        for i in range(20)
    ]
    client = NightscoutClient(
        SiteConfig(id="s", url="http://ns.test"), page_size=4, transport=_history_server(docs)
    )
    ids = _ids(client.history_pages(ENTRIES))
    assert sorted(ids) == sorted(d["identifier"] for d in docs)
    assert len(ids) == len(set(ids))
    resumed = _ids(client.history_pages(ENTRIES, after_srv_modified=base + 5))
    assert set(resumed) == {
        f"d{i}" for i in range(5, 20)
    }  # resume is inclusive of the cursor's millisecond


def test_history_start_respects_nightscout_minimum_timestamp() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"status": 200, "result": []})

    client = NightscoutClient(
        SiteConfig(id="s", url="http://ns.test"), transport=httpx.MockTransport(handler)
    )
    assert list(client.history_pages(TREATMENTS)) == []
    assert seen == [f"/api/v3/treatments/history/{HISTORY_START_MS}"]


def test_jwt_is_renewed_before_expiry_and_after_a_401() -> None:
    store = SiteStore("locked")
    store.insert(
        "entries",
        [{"type": "sgv", "sgv": 100 + i, "date": NOW_MS - i * 300_000} for i in range(50)],
    )
    server_clock = [float(int(time.time()))]  # whole seconds, as a JWT's exp is
    client_clock = [server_clock[0]]
    with FakeNightscout(
        {"locked": store},
        tokens=["reader-abcdef0123456789"],
        jwt_lifetime_seconds=3,
        auth_clock=lambda: server_clock[0],
    ).start() as ns:
        client = NightscoutClient(
            SiteConfig(id="locked", url=ns.site_url("locked"), token="reader-abcdef0123456789"),
            page_size=10,
            clock=lambda: client_clock[0],
        )
        pages = client.history_pages(ENTRIES)
        next(pages)
        exchanges = lambda: sum(1 for r in ns.requests if "/authorization/request/" in r.path)  # noqa: E731
        assert exchanges() == 1
        client_clock[0] += 2.0  # not yet inside the renewal margin (3 s JWT: the last 0.6 s)
        next(pages)
        assert exchanges() == 1
        client_clock[0] += 0.6  # inside the margin: the client renews before asking
        server_clock[0] = client_clock[0]
        next(pages)
        assert exchanges() == 2
        server_clock[0] = time.time() + 10  # the server thinks the JWT expired: 401, renew, retry
        next(pages)
        assert exchanges() == 3
        assert any(r.status == 401 for r in ns.requests)


def test_auth_errors_name_the_site_never_the_secret() -> None:
    store = SiteStore("locked")
    with FakeNightscout({"locked": store}, api_secret="the real secret").start() as ns:
        client = NightscoutClient(
            SiteConfig(id="locked", url=ns.site_url("locked"), api_secret="a wrong secret!")
        )
        with pytest.raises(NightscoutAuthError) as excinfo:
            list(client.v1_pages(ENTRIES))
        message = str(excinfo.value)
        assert "'locked'" in message and "HTTP 401" in message
        assert "wrong secret" not in message and "real secret" not in message


def test_retries_back_off_on_429_and_honour_retry_after() -> None:
    calls: list[float] = []
    now = [0.0]  # a fake clock: the client's backoff advances it instead of sleeping

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(now[0])
        if len(calls) < 3:
            return httpx.Response(429, headers={"Retry-After": "0.3"})
        return httpx.Response(200, json=[])

    client = NightscoutClient(
        SiteConfig(id="s", url="http://ns.test"),
        backoff_seconds=0.01,
        transport=httpx.MockTransport(handler),
        sleep=sleep,
    )
    assert list(client.v1_pages(ENTRIES)) == []
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.3 and calls[2] - calls[1] >= 0.3


def test_connection_errors_exhaust_retries_into_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    waits: list[float] = []
    client = NightscoutClient(
        SiteConfig(id="down", url="http://ns.test"),
        max_retries=2,
        backoff_seconds=0.01,
        transport=httpx.MockTransport(handler),
        sleep=waits.append,
    )
    with pytest.raises(
        NightscoutUnavailableError, match=r"'down'.*after 3 attempts.*connection failed"
    ):
        list(client.v1_pages(ENTRIES))
    assert len(waits) == 2  # two backoffs between three attempts, none on the wall clock


def test_tokens_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    store = SiteStore("locked")
    store.insert("entries", [{"type": "sgv", "sgv": 120, "date": NOW_MS}])
    token = "reader-secret0123456789"
    with (
        FakeNightscout({"locked": store}, tokens=[token]).start() as ns,
        caplog.at_level(logging.DEBUG),
    ):
        client = NightscoutClient(SiteConfig(id="locked", url=ns.site_url("locked"), token=token))
        assert len(_ids(client.history_pages(ENTRIES))) == 1
    assert "/authorization/request/" in caplog.text  # httpx did log the exchange...
    assert token not in caplog.text  # ...without the token
    assert json.dumps(token) not in caplog.text


def test_v1_reads_history_older_than_nightscouts_default_window() -> None:
    # Without a condition on `date`, v1 only searches the last few days; the client bounds every query.
    old = [_sgv(NOW_MS - 86_400_000 * (10 + i), i) for i in range(12)]
    with _site(old).start() as ns:
        client = NightscoutClient(SiteConfig(id="s", url=ns.site_url("s")), page_size=5)
        assert len(_ids(client.v1_pages(ENTRIES))) == 12
        assert len(_ids(client.v1_pages(TREATMENTS))) == 0


def test_v3_is_used_only_with_a_token_that_v3_accepts() -> None:
    with FakeNightscout(
        {"s": SiteStore("s")}, tokens=["reader-0123456789abcdef"], auth_default_roles="readable"
    ).start() as ns:
        anonymous = NightscoutClient(SiteConfig(id="s", url=ns.site_url("s")))
        assert anonymous.v3_access().usable is False
        assert "no token configured" in anonymous.v3_access().reason
        assert not [
            r for r in ns.requests if "/api/v3/" in r.path and r.path != "/s/api/v3/version"
        ]
        reader = NightscoutClient(
            SiteConfig(id="s", url=ns.site_url("s"), token="reader-0123456789abcdef")
        )
        assert reader.v3_access().usable is True
        wrong = NightscoutClient(
            SiteConfig(id="s", url=ns.site_url("s"), token="reader-fedcba9876543210")
        )
        with pytest.raises(NightscoutAuthError, match="'s'"):
            wrong.v3_access()
    with FakeNightscout(
        {"s": SiteStore("s")}, tokens=["reader-0123456789abcdef"], v3_enabled=False
    ).start() as ns:
        old = NightscoutClient(
            SiteConfig(id="s", url=ns.site_url("s"), token="reader-0123456789abcdef")
        )
        assert old.v3_access() == V3Access(False, "the server has no API v3 (Nightscout before 14)")


def test_count_sees_what_v1_paging_sees_including_broken_clocks() -> None:
    docs = [_sgv(NOW_MS - 300_000 * i, i) for i in range(7)] + [
        _sgv(0, 99),
        _sgv(NOW_MS + 5 * 86_400_000, 98),
    ]
    store = SiteStore("s", uploaded_through="v1")
    store.insert("entries", docs)
    store.insert(
        "treatments",
        [{"eventType": "Note", "created_at": "1999-02-03T04:05:06.000Z", "notes": "old"}],
    )
    with FakeNightscout({"s": store}).start() as ns:
        client = NightscoutClient(SiteConfig(id="s", url=ns.site_url("s")), page_size=4)
        assert (
            client.count(ENTRIES) == 9 == len(_ids(client.v1_pages(ENTRIES)))
        )  # 1970 and the future too
        assert client.count(TREATMENTS) == 1 == len(_ids(client.v1_pages(TREATMENTS)))
        assert client.count(DEVICESTATUS) == 0
        assert client.count(PROFILE) is None  # v1 has no count for profiles


def test_every_profile_is_read_not_only_the_newest_ten() -> None:
    store = SiteStore("s", uploaded_through="v1")
    store.insert(
        "profile",
        [
            {"defaultProfile": "D", "startDate": f"2024-01-{day:02d}T00:00:00.000Z", "store": {}}
            for day in range(1, 24)
        ],
    )
    with FakeNightscout({"s": store}).start() as ns:
        client = NightscoutClient(SiteConfig(id="s", url=ns.site_url("s")), page_size=10)
        assert len(_ids(client.v1_pages(PROFILE))) == 23
        assert [r.query.get("count") for r in ns.requests] == ["10", "100"]


def test_a_url_that_is_not_nightscout_says_which_setting_to_check() -> None:
    with FakeNightscout({"s": SiteStore("s")}).start() as ns:
        client = NightscoutClient(SiteConfig(id="typo", url=ns.base_url + "/no-such-site"))
        with pytest.raises(ApiNotFoundError) as failure:
            list(client.v1_pages(ENTRIES))
    message = str(failure.value)
    assert message.startswith(
        f"no Nightscout API at {ns.base_url}/no-such-site (HTTP 404 for /api/v1/entries.json)"
    )
    assert "NIGHTSCOUT_URL" in message and "'typo'" in message
