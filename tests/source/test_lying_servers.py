"""Replies that are not what Nightscout sends are errors for that site, never "no data"."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cascade.config import Settings, SiteConfig
from cascade.exceptions import NightscoutUnavailableError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import Ingestor
from cascade.lake.tables import read_cursor
from cascade.source.nightscout.client import NightscoutClient, UnexpectedReplyError
from cascade.source.nightscout.collections import ENTRIES, TREATMENTS
from cascade_dev.fake_nightscout.server import FakeNightscout

SITE = SiteConfig(id="s", url="http://ns.test")


def _client(handler: Any, **options: Any) -> tuple[NightscoutClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return NightscoutClient(
        SITE, transport=httpx.MockTransport(record), max_retries=1, backoff_seconds=0, **options
    ), seen


@pytest.mark.parametrize(
    "body",
    [{"status": 503, "message": "database maintenance"}, None, "ok", {"result": []}],
    ids=["maintenance-object", "null", "string", "v3-shape"],
)
def test_a_200_that_is_not_a_list_of_documents_is_an_error(body: Any) -> None:
    raw = json.dumps(body).encode()  # `null` included (httpx's json=None would send nothing)
    client, _ = _client(lambda request: httpx.Response(200, content=raw))
    with pytest.raises(
        UnexpectedReplyError,
        match=r"'s'.*answered 200 but not as Nightscout does.*cursor did not move",
    ):
        list(client.v1_pages(ENTRIES))


def test_html_where_json_belongs_is_an_error_after_retries() -> None:
    client, seen = _client(lambda request: httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(NightscoutUnavailableError, match="malformed JSON"):
        list(client.v1_pages(TREATMENTS))
    assert 1 < len(seen) <= 10


def test_a_redirect_is_an_error_that_names_where_it_points() -> None:
    client, _ = _client(
        lambda request: httpx.Response(
            302, headers={"Location": "http://elsewhere.test/login?next=x"}
        )
    )
    with pytest.raises(
        NightscoutUnavailableError, match=r"redirected \(HTTP 302 to http://elsewhere.test/login\)"
    ):
        list(client.v1_pages(ENTRIES))


def test_a_server_ignoring_find_and_count_is_stopped_at_once() -> None:
    newest = [
        {"_id": f"{i:024x}", "type": "sgv", "sgv": 100, "date": 1_780_000_000_000 - i * 300_000}
        for i in range(30)
    ]
    client, seen = _client(lambda request: httpx.Response(200, json=newest), page_size=10)
    with pytest.raises(UnexpectedReplyError, match="at most 10 documents"):
        list(client.v1_pages(ENTRIES))
    same_page = newest[:10]
    client, seen = _client(lambda request: httpx.Response(200, json=same_page), page_size=10)
    with pytest.raises(UnexpectedReplyError, match="within the date bounds"):
        list(client.v1_pages(ENTRIES))
    assert len(seen) == 2  # the second page showed the server ignores $lte


def test_v3_history_that_goes_backwards_is_an_error() -> None:
    old = [{"identifier": "a", "srvModified": 1_000_000_000_000}]
    client, _ = _client(lambda request: httpx.Response(200, json={"status": 200, "result": old}))
    with pytest.raises(UnexpectedReplyError, match="changed after"):
        list(client.history_pages(ENTRIES, after_srv_modified=1_700_000_000_000))


@pytest.mark.parametrize(
    "reply",
    [
        {"token": {"nested": "object"}, "exp": 1},
        {"token": "", "exp": 1},
        {"token": "a.b.c", "exp": "tomorrow"},
        {"token": "a.b.c", "exp": True},
        ["a.b.c"],
        {"jwt": "a.b.c"},
    ],
    ids=["token-object", "token-empty", "exp-text", "exp-bool", "list", "no-token"],
)
def test_a_malformed_token_exchange_reply_is_a_clear_error(reply: Any) -> None:
    site = SiteConfig(id="s", url="http://ns.test", token="reader-0123456789")  # type: ignore[arg-type]
    client = NightscoutClient(
        site,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=reply)),
        max_retries=0,
        backoff_seconds=0,
    )
    with pytest.raises(UnexpectedReplyError, match=r"token exchange .* without a JWT") as failure:
        client.v3_access()
    assert "reader-0123456789" not in str(failure.value)


@pytest.mark.integration
def test_a_lying_reply_leaves_the_cursor_where_it_was(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=1, days=1, seed=2).start() as ns:
        site = SiteConfig(id="subject-01", url=ns.site_url("subject-01"))
        settings = settings.with_values(**{"nightscout_sites": [site]})
        Ingestor(settings).run([site], ("entries",))
    before = read_cursor(load_lake_catalog(settings).load_table("raw.entries"), "subject-01")
    maintenance = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"status": 503, "message": "maintenance"})
    )
    liar = NightscoutClient(site, transport=maintenance, max_retries=0)
    with pytest.raises(UnexpectedReplyError):
        Ingestor(settings, clients={"subject-01": liar}).run([site], ("entries",))
    assert (
        read_cursor(load_lake_catalog(settings).load_table("raw.entries"), "subject-01") == before
    )
