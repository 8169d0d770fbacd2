"""Concurrent writers on the local profile: many `cascade ingest` processes at once, same or other
sites, each round checked against an undisturbed reference (see writers.py). The lakehouse
profile's twin is tests/stack/test_lakehouse_concurrency.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.config import load_settings
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest

from .harness import (
    V1,
    Launcher,
    Mode,
    assert_same,
    lake_contents,
    timeout,
    trials,
)
from .writers import CASES, COLLECTIONS, DAYS, ENV, SITES, run_rounds, scenarios

pytestmark = [pytest.mark.integration, timeout(600)]

#: Writers let go at the same instant in each round.
WRITERS = 4
#: Rounds per case: the first into an empty lake, the others after news on the sites.
ROUNDS = trials(2)


@pytest.mark.parametrize(("scenario", "mode"), CASES, ids=[f"{s}-{m.name}" for s, m in CASES])
def test_concurrent_writers_keep_every_document_exactly_once(
    processes: Launcher, tmp_path: Path, scenario: str, mode: Mode
) -> None:
    with mode.server(subjects=len(SITES), days=DAYS, seed=40 + len(scenario)).start() as ns:
        settings = load_settings(cascade_home=tmp_path / "lake", nightscout_sites=mode.sites(ns))
        reference = settings.with_values(**{"cascade_home": tmp_path / "reference"})
        load_lake_catalog(settings)  # the catalog database alone: see the brand-new home test
        seconds = run_rounds(
            processes, ns, mode, scenarios(WRITERS)[scenario], settings, reference, ROUNDS
        )
    print(
        f"\n{scenario} ({mode.name}, local): {ROUNDS} rounds of {WRITERS} writers, "
        f"rounds took {', '.join(f'{s:.1f}s' for s in seconds)}"
    )


#: Brand-new homes raced into by WRITERS processes each.
NEW_HOMES = trials(8)


def test_writers_racing_into_a_brand_new_home_all_succeed(
    processes: Launcher, tmp_path: Path
) -> None:
    with V1.server(subjects=1, days=DAYS, seed=47).start() as ns:
        reference = load_settings(
            cascade_home=tmp_path / "reference", nightscout_sites=V1.sites(ns)
        )
        ingest(reference, collections=COLLECTIONS)
        expected = lake_contents(reference, collections=COLLECTIONS)
        for home in range(NEW_HOMES):
            settings = reference.with_values(**{"cascade_home": tmp_path / f"home-{home}"})
            for run in processes.race(settings, [None] * WRITERS, COLLECTIONS, **ENV):
                run.assert_clean()
            assert_same(lake_contents(settings, collections=COLLECTIONS), expected, f"home {home}")
