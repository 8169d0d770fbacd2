"""Rounds of concurrent `cascade ingest` writers, on either profile, checked against a reference.

Each round lets every writer go at the same instant (see forkserver.py), so they race to create
the namespace and the tables of an empty lake (first round), then to commit the same tables: on
one site their upserts overlap record for record; on different sites only their commits collide.
Between rounds the sites get news (new readings, a poison one, an edit, a deletion), so later
rounds have something to write too. After every round the lake must hold exactly what one
undisturbed ingest of the same server history holds, every writer must have exited 0 with no
traceback, and every document the server shows must be a row or a reject, once.
"""

from __future__ import annotations

import time

from cascade.config import Settings
from cascade.lake.ingest import ingest
from cascade_dev.fake_nightscout.server import FakeNightscout

from .harness import (
    V1,
    V1_V3,
    V3,
    Launcher,
    Mode,
    assert_same,
    assert_served_documents,
    lake_contents,
)
from .news import add_news

SITES = ("subject-01", "subject-02", "subject-03", "subject-04")
DAYS = 1
#: Entries (with their rejects) and treatments: devicestatus and profile take the same path.
COLLECTIONS = ("entries", "treatments")
#: Fewer, larger commits than the kill trials: several writers on two cores still collide often.
ENV = {"NIGHTSCOUT_PAGE_SIZE": "100", "INGEST_COMMIT_ROWS": "200"}


def scenarios(writers: int) -> dict[str, list[list[str] | None]]:
    """Which sites each of `writers` processes loads (None: every configured site)."""
    return {
        "same-site": [["subject-01"]] * writers,
        "different-sites": [[SITES[i % len(SITES)]] for i in range(writers)],
        # two writers of every site, and two of half the sites each
        "mixed": [None, None, list(SITES[:2]), list(SITES[2:])][:writers],
    }


#: (scenario, mode) of every case, on either profile.
CASES = [
    ("same-site", V1),
    ("same-site", V3),
    ("different-sites", V1_V3),
    ("mixed", V3),
]


def run_rounds(
    processes: Launcher,
    ns: FakeNightscout,
    mode: Mode,
    writers: list[list[str] | None],
    settings: Settings,
    reference: Settings,
    rounds: int,
) -> list[float]:
    """Race `writers` into `settings`' lake for `rounds` rounds, comparing it after each with
    `reference`, a lake that one undisturbed ingest follows the same server history into.
    Returns how long each round took."""
    involved = sorted({site for sites in writers for site in (sites or SITES)})
    seconds = []
    for round_ in range(rounds):
        if round_:
            for site in involved:
                add_news(ns, site, round_, edits_through="v3" if mode.token else "v1")
        started = time.monotonic()
        for run in processes.race(settings, writers, COLLECTIONS, **ENV):
            run.assert_clean()
        seconds.append(time.monotonic() - started)
        ingest(reference, site_ids=involved, collections=COLLECTIONS)
        expected = lake_contents(reference, involved, COLLECTIONS)
        label = f"round {round_ + 1} of {len(writers)} writers ({mode.name})"
        assert_same(lake_contents(settings, involved, COLLECTIONS), expected, label)
        assert_served_documents(expected, ns, mode, DAYS, involved)
    return seconds
