"""Ingestion end to end: the fake Nightscout over real HTTP into a real Iceberg catalog."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings, SiteConfig
from cascade.exceptions import NightscoutAuthError, NightscoutUnavailableError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.lake.tables import read_cursor
from cascade.source.fake.server import FakeNightscout
from cascade.source.fake.synthetic import dirty_record_counts

pytestmark = pytest.mark.integration

DAYS = 2
COLLECTIONS = ("entries", "treatments", "devicestatus", "profile")


def _configure(settings: Settings, ns: FakeNightscout, **site_extra: str) -> Settings:
    sites = [SiteConfig(id=s, url=ns.site_url(s), **site_extra) for s in ns.site_ids]
    return settings.model_copy(update={"nightscout_sites": sites})


@pytest.fixture
def server() -> Iterator[FakeNightscout]:
    with FakeNightscout.synthetic(subjects=2, days=DAYS, seed=7).start() as ns:
        yield ns


def _rows(catalog: Catalog, collection: str, site: str | None = None) -> int:
    table = catalog.load_table(f"raw.{collection}").scan().to_arrow()
    return table.num_rows if site is None else table.filter(pc.equal(table["site_id"], site)).num_rows


def _expected_rows(ns: FakeNightscout, collection: str) -> int:
    """What the server holds (valid records) minus what the synthetic data makes rejectable."""
    rejectable = dirty_record_counts(DAYS)[f"rejectable_{collection}"]
    return sum(store.count(collection) - rejectable for store in ns.stores.values())


def test_full_load_has_exactly_what_the_server_holds(settings: Settings, server: FakeNightscout) -> None:
    settings = _configure(settings, server)
    reports = ingest(settings)
    catalog = load_lake_catalog(settings)
    for collection in COLLECTIONS:
        assert _rows(catalog, collection) == _expected_rows(server, collection), collection
    rejects = catalog.load_table("raw.rejects").scan().to_arrow()
    expected_rejects = sum(dirty_record_counts(DAYS)[f"rejectable_{c}"] for c in COLLECTIONS) * 2
    assert rejects.num_rows == expected_rejects
    assert all(reason for reason in rejects["reason"].to_pylist())
    assert {r.api for r in reports} == {"v3"}
    entries = catalog.load_table("raw.entries")
    for site in server.site_ids:
        assert read_cursor(entries, site)["api"] == "v3"
    # every page landed in stage
    assert list((settings.staging_path / "nightscout" / "subject-01" / "entries").rglob("*.json.zst"))


def test_rerun_and_window_reingest_add_nothing(settings: Settings, server: FakeNightscout) -> None:
    settings = _configure(settings, server)
    ingest(settings)
    catalog = load_lake_catalog(settings)
    before = {c: (_rows(catalog, c), len(catalog.load_table(f"raw.{c}").snapshots())) for c in (*COLLECTIONS, "rejects")}
    ingest(settings)
    now = datetime.now(UTC)
    ingest(settings, since=now - timedelta(days=DAYS + 1), until=now + timedelta(days=1))
    catalog = load_lake_catalog(settings)
    after = {c: (_rows(catalog, c), len(catalog.load_table(f"raw.{c}").snapshots())) for c in (*COLLECTIONS, "rejects")}
    assert after == before  # same rows, and not even a new snapshot


def test_edits_and_deletions_arrive_through_v3_history(settings: Settings, server: FakeNightscout) -> None:
    settings = _configure(settings, server)
    ingest(settings)
    store = server.stores["subject-01"]
    treatments = [d for d in store.documents("treatments") if d.get("eventType") == "Meal Bolus"]
    edited, deleted = treatments[0], treatments[1]
    store.edit("treatments", edited["identifier"], {"carbs": 77})
    store.delete("treatments", deleted["identifier"])
    store.insert("entries", [{"type": "sgv", "sgv": 111, "date": int(datetime.now(UTC).timestamp() * 1000) - 60_000, "device": "late"}])
    reports = ingest(settings, collections=("treatments", "entries"))
    by = {(r.site_id, r.collection): r for r in reports}
    assert by[("subject-01", "treatments")].replaced == 2
    assert by[("subject-01", "entries")].inserted == 1
    catalog = load_lake_catalog(settings)
    rows = catalog.load_table("raw.treatments").scan().to_arrow()
    mine = {r["source_id"]: r for r in rows.filter(pc.equal(rows["site_id"], "subject-01")).to_pylist()}
    assert mine[edited["identifier"]]["carbs_grams"] == 77
    assert mine[deleted["identifier"]]["is_valid"] is False  # kept, marked deleted
    assert _rows(catalog, "treatments") == _expected_rows(server, "treatments") + 1  # the tombstone stays


def test_v1_only_server_falls_back_and_resumes_incrementally(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=1, days=DAYS, seed=3, v3_enabled=False).start() as ns:
        settings = _configure(settings, ns)
        reports = ingest(settings)
        assert {r.api for r in reports} == {"v1"}
        catalog = load_lake_catalog(settings)
        for collection in COLLECTIONS:
            assert _rows(catalog, collection) == _expected_rows(ns, collection), collection
        cursor = read_cursor(catalog.load_table("raw.entries"), "subject-01")
        assert cursor is not None and "pending" not in cursor
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        ns.stores["subject-01"].insert("entries", [{"type": "sgv", "sgv": 140 + i, "date": now_ms - 1000 - i * 1000, "device": "new"} for i in range(3)])
        second = ingest(settings, collections=("entries",))
        assert second[0].inserted == 3
        assert _rows(load_lake_catalog(settings), "entries") == _expected_rows(ns, "entries")


def test_locked_site_with_api_secret_token_and_bad_credentials(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=1, days=1, seed=5, api_secret="correct horse battery", tokens=["reader-0123456789abcdef"], jwt_lifetime_seconds=3600).start() as ns:
        by_secret = _configure(settings, ns, api_secret="correct horse battery")
        assert {r.api for r in ingest(by_secret, collections=("entries",))} == {"v1"}
        by_token = _configure(settings.model_copy(update={"cascade_home": settings.cascade_home / "b"}), ns, token="reader-0123456789abcdef")
        assert {r.api for r in ingest(by_token, collections=("entries",))} == {"v3"}
        wrong = _configure(settings.model_copy(update={"cascade_home": settings.cascade_home / "c"}), ns, api_secret="wrong secret value")
        with pytest.raises(NightscoutAuthError) as excinfo:
            ingest(wrong, collections=("entries",))
        assert "subject-01" in str(excinfo.value) and "wrong secret value" not in str(excinfo.value)
        anonymous = _configure(settings.model_copy(update={"cascade_home": settings.cascade_home / "d"}), ns)
        with pytest.raises(NightscoutAuthError, match="locked"):
            ingest(anonymous, collections=("entries",))


@pytest.mark.parametrize("kind", ["slow", "429", "500", "503", "drop", "malformed_json"])
def test_every_injected_fault_is_survived(settings: Settings, kind: str) -> None:
    with FakeNightscout.synthetic(subjects=1, days=1, seed=11).start() as ns:
        settings = _configure(settings, ns).model_copy(update={"nightscout_page_size": 100, "nightscout_timeout_seconds": 1.0})
        ns.inject(kind, times=2, path_contains="/entries", delay_seconds=1.5)
        ingest(settings, collections=("entries",))
        assert _rows(load_lake_catalog(settings), "entries") == ns.stores["subject-01"].count("entries") - dirty_record_counts(1)["rejectable_entries"]
        assert any(r.status in (429, 500, 503) or kind in ("slow", "drop", "malformed_json") for r in ns.requests)


def test_retries_run_out_with_a_clear_error_and_nothing_half_written(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=1, days=1, seed=11).start() as ns:
        settings = _configure(settings, ns).model_copy(update={"nightscout_max_retries": 2})
        ns.inject("503", times=100, path_contains="/entries")
        with pytest.raises(NightscoutUnavailableError, match=r"subject-01.*after 3 attempts.*HTTP 503"):
            ingest(settings, collections=("entries",))
        table = load_lake_catalog(settings).load_table("raw.entries")
        assert table.current_snapshot() is None and read_cursor(table, "subject-01") is None


def test_rebuild_from_stage_restores_every_row(settings: Settings, server: FakeNightscout) -> None:
    settings = _configure(settings, server)
    ingest(settings)
    catalog = load_lake_catalog(settings)
    counts = {c: _rows(catalog, c) for c in COLLECTIONS}
    for collection in COLLECTIONS:
        catalog.drop_table(f"raw.{collection}")
    server.stop()  # prove Nightscout is not asked
    reports = ingest(settings, from_stage=True)
    assert {r.api for r in reports} == {"stage"}
    catalog = load_lake_catalog(settings)
    assert {c: _rows(catalog, c) for c in COLLECTIONS} == counts


def test_sites_respect_the_per_site_concurrency_bound(settings: Settings, server: FakeNightscout) -> None:
    settings = _configure(settings, server).model_copy(update={"nightscout_concurrency": 1, "nightscout_page_size": 100})
    ingest(settings)
    assert max(server.max_concurrent_by_site.values()) == 1
