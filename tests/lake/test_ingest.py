"""Ingestion end to end: the fake Nightscout over real HTTP into a real Iceberg catalog."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings, SiteConfig
from cascade.exceptions import (
    IncompleteLoadError,
    NightscoutAuthError,
    NightscoutUnavailableError,
    SitesFailedError,
)
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.lake.tables import read_cursor
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.synthetic import dirty_record_counts

pytestmark = pytest.mark.integration

DAYS = 2
COLLECTIONS = ("entries", "treatments", "devicestatus", "profile")


def _configure(settings: Settings, ns: FakeNightscout, **site_extra: str) -> Settings:
    sites = [SiteConfig(id=s, url=ns.site_url(s), **site_extra) for s in ns.site_ids]
    return settings.with_values(**{"nightscout_sites": sites})


@pytest.fixture
def server() -> Iterator[FakeNightscout]:
    with FakeNightscout.synthetic(subjects=2, days=DAYS, seed=7).start() as ns:
        yield ns


def _rows(catalog: Catalog, collection: str, site: str | None = None) -> int:
    table = catalog.load_table(f"raw.{collection}").scan().to_arrow()
    return (
        table.num_rows if site is None else table.filter(pc.equal(table["site_id"], site)).num_rows
    )


def _expected_rows(ns: FakeNightscout, collection: str) -> int:
    """What the server holds (valid records) minus what the synthetic data makes rejectable."""
    rejectable = dirty_record_counts(DAYS)[f"rejectable_{collection}"]
    return sum(store.count(collection) - rejectable for store in ns.stores.values())


TOKEN = "reader-0123456789abcdef"


@pytest.mark.parametrize(
    ("uploaded_through", "token", "paged_api"),
    [
        ("v1", None, "v1"),  # an open site, no credentials: v1 alone
        ("v1", TOKEN, "v1+v3"),  # uploads through v1 are not in v3 history: both
        ("v3", TOKEN, "v3"),  # everything in v3 history and the count agrees: v3 alone
    ],
)
def test_full_load_has_exactly_what_the_server_holds(
    settings: Settings, uploaded_through: str, token: str | None, paged_api: str
) -> None:
    tokens = [TOKEN] if token else []
    with FakeNightscout.synthetic(
        subjects=2,
        days=DAYS,
        seed=7,
        uploaded_through=uploaded_through,
        tokens=tokens,  # type: ignore[arg-type]
        auth_default_roles="readable",
    ).start() as server:
        settings = _configure(settings, server, **({"token": token} if token else {}))
        reports = ingest(settings)
        catalog = load_lake_catalog(settings)
        for collection in COLLECTIONS:
            assert _rows(catalog, collection) == _expected_rows(server, collection), collection
        rejects = catalog.load_table("raw.rejects").scan().to_arrow()
        dirty = dirty_record_counts(DAYS)
        rejectable = sum(dirty[f"rejectable_{c}"] for c in COLLECTIONS)
        if uploaded_through == "v1":
            # Through v1 an unparseable created_at becomes the upload time (lib/server/treatments.js),
            # and an entry with no date matches no v1 date query: neither reaches the lake.
            rejectable -= dirty["treatments_created_at_unparseable"] + dirty["entries_missing_date"]
        assert rejects.num_rows == rejectable * 2
        assert all(reason for reason in rejects["reason"].to_pylist())
        apis = {r.collection: r.api for r in reports}
        assert {apis[c] for c in ("entries", "treatments", "devicestatus")} == {paged_api}
        assert apis["profile"] == ("v1+v3" if token else "v1")
        for report in reports:
            assert (
                report.documents
                == report.inserted + report.replaced + report.unchanged + report.rejected
            )
            assert report.reason
        entries = catalog.load_table("raw.entries")
        for site in server.site_ids:
            # a cursor part moves only with rows: v3 history of v1 uploads has none
            read_by = {"v1"} & set(paged_api.split("+")) | (
                {"v3"} if uploaded_through == "v3" else set()
            )
            assert set(read_cursor(entries, site)) == read_by
        # every page landed in stage
        assert list(
            (settings.lake.staging_path / "nightscout" / "subject-01" / "entries").rglob(
                "*.json.zst"
            )
        )


def test_rerun_and_window_reingest_add_nothing(settings: Settings, server: FakeNightscout) -> None:
    settings = _configure(settings, server)
    ingest(settings)
    catalog = load_lake_catalog(settings)
    before = {
        c: (_rows(catalog, c), len(catalog.load_table(f"raw.{c}").snapshots()))
        for c in (*COLLECTIONS, "rejects")
    }
    ingest(settings)
    now = datetime.now(UTC)
    ingest(settings, since=now - timedelta(days=DAYS + 1), until=now + timedelta(days=1))
    catalog = load_lake_catalog(settings)
    after = {
        c: (_rows(catalog, c), len(catalog.load_table(f"raw.{c}").snapshots()))
        for c in (*COLLECTIONS, "rejects")
    }
    assert after == before  # same rows, and not even a new snapshot


def test_edits_and_deletions_arrive_through_v3_history(settings: Settings) -> None:
    with FakeNightscout.synthetic(
        subjects=1, days=DAYS, seed=7, tokens=[TOKEN], auth_default_roles="readable"
    ).start() as server:
        settings = _configure(settings, server, token=TOKEN)
        ingest(settings)
        store = server.stores["subject-01"]
        treatments = [
            d for d in store.documents("treatments") if d.get("eventType") == "Meal Bolus"
        ]
        edited, deleted = treatments[0], treatments[1]  # uploaded through v1: no identifier
        store.edit("treatments", edited["_id"], {"carbs": 77})
        store.delete("treatments", deleted["_id"])
        store.insert(
            "entries",
            [
                {
                    "type": "sgv",
                    "sgv": 111,
                    "date": int(datetime.now(UTC).timestamp() * 1000) - 60_000,
                    "device": "late",
                }
            ],
        )
        reports = ingest(settings, collections=("treatments", "entries"))
        by = {(r.site_id, r.collection): r for r in reports}
        assert by[("subject-01", "treatments")].replaced == 2
        assert by[("subject-01", "entries")].inserted == 1
        catalog = load_lake_catalog(settings)
        rows = catalog.load_table("raw.treatments").scan().to_arrow()
        mine = {
            r["source_id"]: r
            for r in rows.filter(pc.equal(rows["site_id"], "subject-01")).to_pylist()
        }
        assert mine[edited["_id"]]["carbs_grams"] == 77
        assert mine[deleted["_id"]]["is_valid"] is False  # kept, marked deleted
        assert (
            _rows(catalog, "treatments") == _expected_rows(server, "treatments") + 1
        )  # the tombstone stays


def test_a_lake_short_of_the_server_is_repaired_or_the_run_fails(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=1, days=DAYS, seed=3).start() as server:
        settings = _configure(settings, server)
        ingest(settings, collections=("entries",))
        store = server.stores["subject-01"]
        # A late upload, dated before the look-back window: incremental paging cannot see it.
        old = int((datetime.now(UTC) - timedelta(days=DAYS - 1)).timestamp() * 1000) + 7
        store.insert(
            "entries", [{"type": "sgv", "sgv": 142, "date": old, "device": "late-uploader"}]
        )
        reports = ingest(settings, collections=("entries",))
        assert reports[0].inserted == 1 and "whole v1 history" in reports[0].reason
        assert reports[0].lake_count == reports[0].server_count
        # A server whose count says more than it will ever list: the run fails loudly.
        catalog = load_lake_catalog(settings)
        real_count = store.count_matching
        store.count_matching = lambda collection, predicates: real_count(collection, predicates) + 5  # type: ignore[method-assign]
        with pytest.raises(
            IncompleteLoadError,
            match=r"subject-01.*entries: Nightscout counts [\d,]+ documents, the lake holds",
        ):
            ingest(settings, collections=("entries",))
        assert _rows(catalog, "entries") == _expected_rows(server, "entries")


def test_v1_only_server_falls_back_and_resumes_incrementally(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=1, days=DAYS, seed=3, v3_enabled=False).start() as ns:
        settings = _configure(settings, ns)
        reports = ingest(settings)
        assert {r.api for r in reports} == {"v1"}
        catalog = load_lake_catalog(settings)
        for collection in COLLECTIONS:
            assert _rows(catalog, collection) == _expected_rows(ns, collection), collection
        cursor = read_cursor(catalog.load_table("raw.entries"), "subject-01")
        assert cursor is not None and "pending" not in cursor["v1"]
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        ns.stores["subject-01"].insert(
            "entries",
            [
                {"type": "sgv", "sgv": 140 + i, "date": now_ms - 1000 - i * 1000, "device": "new"}
                for i in range(3)
            ],
        )
        second = ingest(settings, collections=("entries",))
        assert second[0].inserted == 3
        assert _rows(load_lake_catalog(settings), "entries") == _expected_rows(ns, "entries")


def test_locked_site_with_api_secret_token_and_bad_credentials(settings: Settings) -> None:
    with FakeNightscout.synthetic(
        subjects=1,
        days=1,
        seed=5,
        api_secret="correct horse battery",
        tokens=["reader-0123456789abcdef"],
        jwt_lifetime_seconds=3600,
    ).start() as ns:
        by_secret = _configure(settings, ns, api_secret="correct horse battery")
        assert {r.api for r in ingest(by_secret, collections=("entries",))} == {"v1"}
        by_token = _configure(
            settings.with_values(**{"cascade_home": settings.lake.home / "b"}),
            ns,
            token="reader-0123456789abcdef",
        )
        assert {r.api for r in ingest(by_token, collections=("entries",))} == {"v1+v3"}
        wrong = _configure(
            settings.with_values(**{"cascade_home": settings.lake.home / "c"}),
            ns,
            api_secret="wrong secret value",
        )
        with pytest.raises(NightscoutAuthError) as excinfo:
            ingest(wrong, collections=("entries",))
        assert "subject-01" in str(excinfo.value) and "wrong secret value" not in str(excinfo.value)
        anonymous = _configure(
            settings.with_values(**{"cascade_home": settings.lake.home / "d"}), ns
        )
        with pytest.raises(NightscoutAuthError, match="locked"):
            ingest(anonymous, collections=("entries",))


@pytest.mark.parametrize("kind", ["slow", "429", "500", "503", "drop", "malformed_json"])
def test_every_injected_fault_is_survived(settings: Settings, kind: str) -> None:
    with FakeNightscout.synthetic(subjects=1, days=1, seed=11).start() as ns:
        settings = _configure(settings, ns).with_values(
            **{"nightscout_page_size": 100, "nightscout_timeout_seconds": 1.0}
        )
        ns.inject(kind, times=2, path_contains="/entries", delay_seconds=1.5)
        ingest(settings, collections=("entries",))
        assert (
            _rows(load_lake_catalog(settings), "entries")
            == ns.stores["subject-01"].count("entries")
            - dirty_record_counts(1)["rejectable_entries"]
        )
        assert any(
            r.status in (429, 500, 503) or kind in ("slow", "drop", "malformed_json")
            for r in ns.requests
        )


def test_retries_run_out_with_a_clear_error_and_nothing_half_written(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=1, days=1, seed=11).start() as ns:
        settings = _configure(settings, ns).with_values(**{"nightscout_max_retries": 2})
        ns.inject("503", times=100, path_contains="/entries")
        with pytest.raises(
            NightscoutUnavailableError, match=r"subject-01.*after 3 attempts.*HTTP 503"
        ):
            ingest(settings, collections=("entries",))
        table = load_lake_catalog(settings).load_table("raw.entries")
        assert table.scan().count() == 0 and read_cursor(table, "subject-01") is None


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    }


def test_a_run_with_nothing_new_writes_nothing(settings: Settings, server: FakeNightscout) -> None:
    settings = _configure(settings, server)
    ingest(settings)
    before = _files(settings.lake.home)
    assert any(name.startswith("stage/") for name in before)  # the first run's pages landed
    reports = ingest(settings)  # re-reads the look-back window: all unchanged (or known rejects)
    assert sum(r.documents for r in reports) > 0
    assert sum(r.inserted + r.replaced for r in reports) == 0
    assert _files(settings.lake.home) == before  # no file added, removed or rewritten


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


def test_sites_respect_the_per_site_concurrency_bound(
    settings: Settings, server: FakeNightscout
) -> None:
    settings = _configure(settings, server).with_values(
        **{"nightscout_concurrency": 1, "nightscout_page_size": 100}
    )
    ingest(settings)
    assert max(server.max_concurrent_by_site.values()) == 1


def test_a_failing_site_never_stops_the_others(settings: Settings) -> None:
    with FakeNightscout.synthetic(subjects=2, days=1, seed=9).start() as ns:
        good = SiteConfig(id="subject-01", url=ns.site_url("subject-01"))
        gone = SiteConfig(id="subject-02", url=ns.base_url + "/no-such-site")
        settings = settings.with_values(**{"nightscout_sites": [good, gone]})
        with pytest.raises(SitesFailedError, match=r"1 site\(s\) failed \(subject-02\)") as failure:
            ingest(settings)
        by = {(r.site_id, r.collection): r for r in failure.value.reports}
        assert "no Nightscout API at" in (by[("subject-02", "entries")].error or "")
        assert (
            by[("subject-02", "profile")].error == "not read: the site failed earlier in this run"
        )
        catalog = load_lake_catalog(settings)
        for collection in COLLECTIONS:
            assert by[("subject-01", collection)].error is None
            assert _rows(catalog, collection, "subject-01") == _expected_rows_of(
                ns, "subject-01", collection
            )
            assert _rows(catalog, collection, "subject-02") == 0


def _expected_rows_of(ns: FakeNightscout, site: str, collection: str) -> int:
    return ns.stores[site].count(collection) - dirty_record_counts(1)[f"rejectable_{collection}"]
