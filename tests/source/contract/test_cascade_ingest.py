"""Cascade itself against the server under test, in every way a user connects: the lake ends
with every document the server holds, a re-run adds nothing, and v3 edits and deletions arrive.

Documents are uploaded the way real uploaders do (v1, plus a few through v3), with a clock
stuck before 2000 and one days ahead among them, and more than the 10 profiles Nightscout's v1
returns by default. Run against a real Nightscout with `NIGHTSCOUT_CONTRACT_URL` (conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import contract_docs as docs
import pyarrow.compute as pc
import pytest
from nightscout_api import Day, NightscoutApi, Target
from pydantic import SecretStr

from cascade.config import Settings, SiteConfig
from cascade.exceptions import NightscoutAuthError, NightscoutError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import LoadReport, ingest

pytestmark = pytest.mark.integration

COLLECTIONS = ("entries", "treatments", "devicestatus", "profile")
READER = "cascade-contract-reader"
EVERY_ID = {"find[_id][$ne]": "0" * 24}
COUNT_ALL = {
    "entries": {"find[date][$gte]": 0},
    "treatments": {"find[created_at][$gte]": "1970-01-01T00:00:00.000Z", **EVERY_ID},
    "devicestatus": {"find[created_at][$gte]": "1970-01-01T00:00:00.000Z", **EVERY_ID},
}


@dataclass
class Uploaded:
    entry_ids: list[str]
    treatment_ids: list[str]
    v3_entry: str


def _reader_token(ns: NightscoutApi) -> str:
    """A read-only access token, made through the API as a user makes one in the admin UI."""
    listed = ns.http.get("/api/v2/authorization/subjects", headers=ns.secret_header).json()
    found = [s for s in listed if s.get("name") == READER]
    if not found:
        created = ns.http.post(
            "/api/v2/authorization/subjects",
            headers=ns.secret_header,
            json={"name": READER, "roles": ["readable"], "notes": "contract tests"},
        )
        assert created.status_code == 200, created.text
        listed = ns.http.get("/api/v2/authorization/subjects", headers=ns.secret_header).json()
        found = [s for s in listed if s.get("name") == READER]
    return str(found[0]["accessToken"])


def _upload(ns: NightscoutApi, day: Day) -> Uploaded:
    entries = ns.v1_post("entries", [docs.entry(day, h / 4) for h in range(40)])
    broken_clocks = [
        docs.entry_at(int(datetime(1999, 6, 1, tzinfo=UTC).timestamp() * 1000), day.marker),
        docs.entry_at(int((datetime.now(UTC) + timedelta(days=3)).timestamp() * 1000), day.marker),
    ]
    ns.v1_post("entries", broken_clocks)
    v3_entry = ns.v3_create("entries", {**docs.entry(day, 20.5), "app": "cascade-contract"})
    treatments = ns.v1_post("treatments", [docs.treatment(day, h, carbs=10 + h) for h in range(12)])
    ns.v3_create(
        "treatments", {**docs.treatment(day, 21), "app": "cascade-contract", "date": day.ms(21)}
    )
    ns.v1_post("devicestatus", [docs.devicestatus(day, h / 2) for h in range(15)])
    for hour in range(12):  # one at a time, as the profile editor saves them
        ns.v1_post("profile", [docs.profile(day, hour)])
    return Uploaded([e["_id"] for e in entries], [t["_id"] for t in treatments], v3_entry)


def _server_counts(ns: NightscoutApi) -> dict[str, int]:
    counts = {}
    for collection, params in COUNT_ALL.items():
        answer = ns.v1(f"/api/v1/count/{collection}/where", params)
        counts[collection] = answer[0]["count"] if answer else 0
    counts["profile"] = len(ns.v1("/api/v1/profile.json", {"count": 100_000}))
    return counts


def _lake_counts(settings: Settings) -> dict[str, int]:
    catalog = load_lake_catalog(settings)
    rejects = catalog.load_table("raw.rejects").scan().to_arrow()
    counts = {}
    for collection in COLLECTIONS:
        rows = catalog.load_table(f"raw.{collection}").scan().to_arrow()
        rejected = rejects.filter(pc.equal(rejects["collection"], collection))
        ids = set(rows["source_id"].to_pylist()) | set(rejected["source_id"].to_pylist())
        counts[collection] = len(ids)
    return counts


def _snapshots(settings: Settings) -> dict[str, int]:
    catalog = load_lake_catalog(settings)
    return {t: len(catalog.load_table(f"raw.{t}").snapshots()) for t in (*COLLECTIONS, "rejects")}


def _row(settings: Settings, collection: str, source_id: str) -> dict[str, Any]:
    rows = load_lake_catalog(settings).load_table(f"raw.{collection}").scan().to_arrow()
    found = rows.filter(pc.equal(rows["source_id"], source_id)).to_pylist()
    assert len(found) == 1, f"{collection} {source_id}: {len(found)} rows"
    return found[0]


@pytest.fixture
def uploaded(ns: NightscoutApi, day: Day) -> Iterator[Uploaded]:
    yield _upload(ns, day)


def _site(target: Target, ns: NightscoutApi, way: str) -> SiteConfig:
    if way == "api secret":
        return SiteConfig(id="contract", url=target.url, api_secret=SecretStr(target.api_secret))
    if way == "token":
        return SiteConfig(id="contract", url=target.url, token=SecretStr(_reader_token(ns)))
    return SiteConfig(id="contract", url=target.url)


@pytest.mark.parametrize("way", ["api secret", "token", "none"])
def test_cascade_holds_every_document_the_server_holds(
    settings: Settings, target: Target, ns: NightscoutApi, uploaded: Uploaded, way: str
) -> None:
    settings = settings.with_values(**{"nightscout_sites": [_site(target, ns, way)]})
    if way == "none" and not target.open:
        with pytest.raises(NightscoutAuthError, match="locked"):
            ingest(settings)
        return

    reports = ingest(settings)

    assert _lake_counts(settings) == _server_counts(ns)
    by_collection = {r.collection: r for r in reports}
    for report in reports:  # the numbers a user reads add up
        assert (
            report.documents
            == report.inserted + report.replaced + report.unchanged + report.rejected
        )
        assert report.lake_count is not None and report.lake_count >= (report.server_count or 0)
    assert by_collection["entries"].api == ("v1+v3" if way == "token" else "v1")
    catalog = load_lake_catalog(settings)
    reasons = catalog.load_table("raw.rejects").scan().to_arrow()["reason"].to_pylist()
    assert any("before 2000" in r for r in reasons) and any("future" in r for r in reasons)

    before = _snapshots(settings)
    again = ingest(settings)
    assert sum(r.inserted + r.replaced for r in again) == 0
    assert _snapshots(settings) == before  # not even a new snapshot


def test_v3_edits_and_deletions_are_mirrored(
    settings: Settings, target: Target, ns: NightscoutApi, uploaded: Uploaded
) -> None:
    settings = settings.with_values(**{"nightscout_sites": [_site(target, ns, "token")]})
    ingest(settings)
    edited, deleted = uploaded.treatment_ids[3], uploaded.entry_ids[5]

    assert ns.v3_patch("treatments", edited, {"carbs": 77, "notes": "edited"}).status_code == 200
    assert ns.v3_delete("entries", deleted).status_code in (200, 204)
    assert ns.v3_delete("entries", uploaded.v3_entry).status_code in (200, 204)
    reports: list[LoadReport] = ingest(settings)

    changed = {r.collection: r.replaced for r in reports}
    assert changed["treatments"] == 1 and changed["entries"] == 2
    assert _row(settings, "treatments", edited)["carbs_grams"] == 77
    assert _row(settings, "entries", deleted)["is_valid"] is False
    assert _row(settings, "entries", uploaded.v3_entry)["is_valid"] is False
    assert _lake_counts(settings) == _server_counts(ns)  # soft deletes stay on both sides


def test_a_site_with_no_nightscout_api_says_where_to_look(
    settings: Settings, target: Target
) -> None:
    url = target.url.rstrip("/") + "/not-nightscout"
    settings = settings.with_values(**{"nightscout_sites": [SiteConfig(id="contract", url=url)]})
    with pytest.raises(
        NightscoutError, match=r"no Nightscout API at .*not-nightscout \(HTTP 404 for /api/v1/"
    ) as failure:
        ingest(settings, collections=("entries",))
    assert "NIGHTSCOUT_URL" in str(failure.value)
