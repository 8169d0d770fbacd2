"""Concurrent writers on the lakehouse profile: `cascade ingest` processes racing on Nessie + MinIO.

The twin of tests/reliability/test_concurrent_writers.py (the rounds are tests/reliability/
writers.py), on the real stack: every case writes to a new Nessie branch with its own stage
prefix on MinIO, and its reference lake gets a branch of its own. The last test races writers
into tables that do not exist yet: Nessie 0.99 does not check a first commit's "no snapshot
yet", so Cascade creates every table already holding an empty snapshot (`lake.tables`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cascade.config import Settings
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.lake.nessie import EMPTY_BRANCH_HASH
from cascade.lake.tables import ensure_raw_table, ensure_rejects_table
from reliability.harness import (
    V1_V3,
    Launcher,
    Mode,
    assert_same,
    lake_contents,
    launcher,
    trials,
)
from reliability.writers import CASES, COLLECTIONS, DAYS, ENV, SITES, run_rounds, scenarios

pytestmark = [pytest.mark.stack, pytest.mark.integration, pytest.mark.timeout(900 * trials(1))]

#: Writers let go at the same instant in each round (fewer than on local: the stack's JVMs
#: share the machine's two cores).
WRITERS = 3
#: Rounds per case: the first into an empty branch, the others after news on the sites.
ROUNDS = trials(2)


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with launcher(tmp_path_factory.mktemp("lakehouse-process-logs")) as started:
        yield started


def _branch(stack: Settings, home: Path, role: str, sites: object) -> Settings:
    """Settings on a new, empty Nessie branch, with a stage prefix of its own."""
    name = f"reliability-{role}-{uuid.uuid4().hex[:8]}"
    created = httpx.post(
        f"{stack.stack.nessie_uri}/api/v2/trees",
        params={"name": name, "type": "BRANCH"},
        json={"type": "BRANCH", "name": "main", "hash": EMPTY_BRANCH_HASH},
    )
    assert created.status_code == 200, created.text
    return stack.on_local_stack(
        name,
        cascade_home=home / role,
        nightscout_sites=sites,
        lake_stage_uri=f"s3://lake/stage/{name}",
    )


@pytest.mark.parametrize(("scenario", "mode"), CASES, ids=[f"{s}-{m.name}" for s, m in CASES])
def test_concurrent_writers_on_the_lakehouse_keep_every_document_exactly_once(
    stack: Settings, processes: Launcher, tmp_path: Path, scenario: str, mode: Mode
) -> None:
    with mode.server(subjects=len(SITES), days=DAYS, seed=70 + len(scenario)).start() as ns:
        settings = _branch(stack, tmp_path, "writers", mode.sites(ns))
        reference = _branch(stack, tmp_path, "reference", mode.sites(ns))
        _first_snapshots(settings)
        seconds = run_rounds(
            processes, ns, mode, scenarios(WRITERS)[scenario], settings, reference, ROUNDS
        )
    print(
        f"\n{scenario} ({mode.name}, lakehouse): {ROUNDS} rounds of {WRITERS} writers, "
        f"rounds took {', '.join(f'{s:.1f}s' for s in seconds)}"
    )


def _first_snapshots(settings: Settings) -> None:
    """The tables (born with an empty first snapshot) made before any writer starts."""
    catalog = load_lake_catalog(settings)
    for collection in COLLECTIONS:
        ensure_raw_table(catalog, collection)
    ensure_rejects_table(catalog)


#: New branches raced into by WRITERS processes on different sites.
NEW_BRANCHES = trials(3)


def test_writers_racing_into_new_tables_on_the_lakehouse_lose_nothing(
    stack: Settings, processes: Launcher, tmp_path: Path
) -> None:
    with V1_V3.server(subjects=WRITERS, days=DAYS, seed=79).start() as ns:
        reference = _branch(stack, tmp_path, "reference", V1_V3.sites(ns))
        ingest(reference, collections=COLLECTIONS)
        expected = lake_contents(reference, collections=COLLECTIONS)
        # Every page a little slow: each writer has opened the new tables before any commits.
        ns.set_random_faults(1.0, ["slow"], delay_seconds=0.3)
        for attempt in range(NEW_BRANCHES):
            settings = _branch(stack, tmp_path, f"new-{attempt}", V1_V3.sites(ns))
            writers = [[site] for site in ns.site_ids]
            for run in processes.race(settings, writers, COLLECTIONS, **ENV):
                run.assert_clean()
            assert_same(
                lake_contents(settings, collections=COLLECTIONS), expected, f"new branch {attempt}"
            )
