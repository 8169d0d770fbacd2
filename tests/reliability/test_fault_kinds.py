"""Every fault kind the fake Nightscout injects: survived at a steady rate, or failing one site alone.

tests/lake/test_ingest.py checks that a couple of injected faults in a row are retried. Here each
kind of `FAULT_KINDS` (and all of them mixed) hits a share of *every* request (token exchange,
status, counts, v3 history, v1 pages), drawn from a seeded generator, and the lake must end
exactly as an undisturbed ingest leaves it. Then each kind hits one site for good, from the
middle of its load on: that site fails alone (its error named, its cursor covering only what it
committed), the other site is loaded whole, and the next clean run leaves the lake exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cascade.config import Settings, load_settings
from cascade.exceptions import SitesFailedError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.lake.tables import read_cursor
from cascade_dev.fake_nightscout.protocol import FAULT_KINDS
from cascade_dev.fake_nightscout.server import FakeNightscout

from .harness import (
    SEED,
    V1_V3,
    V3,
    Contents,
    assert_same,
    assert_served_documents,
    lake_contents,
    timeout,
    trials,
)

pytestmark = [pytest.mark.integration, timeout(300)]

#: Share of requests that fail, in the runs that must recover (seven failures in a row, what
#: the client's retries allow, then has a chance of 0.25**7 per request: never, in practice).
FAULT_RATE = 0.25
#: Runs per fault kind (and for all kinds mixed), each into an empty home with its own seed.
RUNS_PER_KIND = trials(1)
DAYS = 1
SLOW_SECONDS = 0.6  # a "slow" answer comes after the client's timeout
CLIENT = {
    "nightscout_page_size": 100,
    "nightscout_timeout_seconds": 0.3,
    "nightscout_backoff_seconds": 0.01,
    "ingest_commit_rows": 100,
}


@dataclass
class Served:
    ns: FakeNightscout
    settings: Settings  # of the reference home
    contents: Contents


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One site read with a token (v3 history and v1 paging), and its undisturbed reference."""
    with V1_V3.server(subjects=1, days=DAYS, seed=60).start() as ns:
        settings = load_settings(
            cascade_home=tmp_path_factory.mktemp("faults") / "reference",
            nightscout_sites=V1_V3.sites(ns),
            **CLIENT,
        )
        ingest(settings)
        contents = lake_contents(settings)
        assert_served_documents(contents, ns, V1_V3, DAYS, ns.site_ids)
        yield Served(ns, settings, contents)


@pytest.mark.parametrize(
    "kinds", [[kind] for kind in FAULT_KINDS] + [list(FAULT_KINDS)], ids=[*FAULT_KINDS, "all-kinds"]
)
def test_every_fault_kind_at_a_steady_rate_is_survived_exactly(
    served: Served, tmp_path: Path, kinds: list[str]
) -> None:
    ns = served.ns
    injected: Counter[str] = Counter()
    for run in range(RUNS_PER_KIND):
        ns.reset_stats()
        ns.set_random_faults(FAULT_RATE, kinds, seed=SEED + run, delay_seconds=SLOW_SECONDS)
        try:
            settings = served.settings.with_values(**{"cascade_home": tmp_path / f"run-{run}"})
            ingest(settings)
        finally:
            ns.clear_faults()
        # (a "slow" request a client gave up on is logged when it ends: maybe in the next test)
        injected.update(r.fault for r in ns.requests if r.fault in kinds)
        assert_same(lake_contents(settings), served.contents, f"{'+'.join(kinds)} run {run}")
    assert injected and (len(kinds) > 1 or injected[kinds[0]]), injected
    print(
        f"\nfaults {'+'.join(kinds)}: {sum(injected.values())} injected in {RUNS_PER_KIND} run(s), all survived"
    )


#: The collections of the failing-site runs: the site fails in the first; the second shows the
#: healthy site going on (and the failed one not asked again).
FAILING_COLLECTIONS = ("entries", "treatments")
BROKEN = "subject-02"


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two sites read through v3 history alone (so cursors are plain), and their reference."""
    with V3.server(subjects=2, days=DAYS, seed=61).start() as ns:
        settings = load_settings(
            cascade_home=tmp_path_factory.mktemp("failing-site") / "reference",
            nightscout_sites=V3.sites(ns),
            **CLIENT,
        )
        ingest(settings, collections=FAILING_COLLECTIONS)
        yield Served(ns, settings, lake_contents(settings, collections=FAILING_COLLECTIONS))


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_site_that_never_recovers_fails_alone_and_the_next_run_is_exact(
    two_sites: Served, tmp_path: Path, kind: str
) -> None:
    ns, expected = two_sites.ns, two_sites.contents
    settings = two_sites.settings.with_values(
        **{"cascade_home": tmp_path / "lake", "nightscout_max_retries": 1}
    )
    failing = False

    def progress(site_id: str, collection: str, documents: int, done: bool = False) -> None:
        nonlocal failing
        # from the middle of the broken site's first collection on, every request fails
        if site_id == BROKEN and documents and not failing:
            failing = True
            ns.inject(kind, times=10**6, path_contains=f"/{BROKEN}/", delay_seconds=SLOW_SECONDS)

    try:
        with pytest.raises(SitesFailedError) as failure:
            ingest(settings, collections=FAILING_COLLECTIONS, progress=progress)
    finally:
        ns.clear_faults()
    assert {r.site_id for r in failure.value.reports if r.error} == {BROKEN}, failure.value
    assert f"Nightscout site {BROKEN!r}" in str(failure.value)  # named, with what went wrong
    after = lake_contents(settings, collections=FAILING_COLLECTIONS)
    assert not after.duplicates()
    # the healthy site is whole; of the broken one, only some of what it committed
    healthy = [s for s in ns.site_ids if s != BROKEN]
    assert_same(
        lake_contents(settings, healthy, FAILING_COLLECTIONS),
        lake_contents(two_sites.settings, healthy, FAILING_COLLECTIONS),
        f"the healthy sites, while {BROKEN} failed with {kind}",
    )
    for collection, rows in after.rows.items():
        assert set(rows) <= set(expected.rows[collection]), collection
    _assert_cursor_covers_only_committed(settings, ns, BROKEN)

    ingest(settings, collections=FAILING_COLLECTIONS)  # the site is back
    assert_same(
        lake_contents(settings, collections=FAILING_COLLECTIONS),
        expected,
        f"the run after {BROKEN} failed with {kind}",
    )


def _assert_cursor_covers_only_committed(settings: Settings, ns: FakeNightscout, site: str) -> None:
    """Every document below the site's v3 cursor is in the lake (a row or a reject)."""
    catalog = load_lake_catalog(settings)
    contents = lake_contents(settings, [site], FAILING_COLLECTIONS)
    for collection in contents.rows:
        cursor = read_cursor(catalog.load_table(f"raw.{collection}"), site) or {}
        below = cursor.get("v3", {}).get("srv_modified", 0)
        held = {r[1] for r in contents.rows[collection]} | {
            r[3] for r in contents.rejects if r[1] == collection
        }
        covered = {
            stored.identifier
            for stored in ns.stores[site].records(collection)
            if stored.srv_modified is not None and stored.srv_modified < below
        }
        assert covered <= held, (collection, len(covered - held))
