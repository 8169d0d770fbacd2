"""Loads running at once, on the same site or into a fresh home, keep every document exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.compute as pc
import pytest

from cascade.config import Settings
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.tables import NO_BLIND_RETRY
from cascade_dev.fake_nightscout.server import FakeNightscout

pytestmark = pytest.mark.integration

WRITERS = 3
ROUNDS = 2


def _ingest_processes(
    settings: Settings, sites: list[dict[str, str]]
) -> list[subprocess.CompletedProcess[str]]:
    env = dict(
        os.environ,
        CASCADE_HOME=str(settings.lake.home),
        NIGHTSCOUT_SITES=json.dumps(sites),
        NIGHTSCOUT_PAGE_SIZE="100",
        INGEST_COMMIT_ROWS="200",  # many small commits: many chances to collide
    )
    env.pop("NIGHTSCOUT_URL", None)
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "cascade", "ingest", "--collections", "entries,treatments"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    done = []
    for process in started:
        out, err = process.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def test_concurrent_loads_of_one_site_into_a_fresh_home_keep_every_document_once(
    settings: Settings,
) -> None:
    with FakeNightscout.synthetic(subjects=1, days=3, seed=13).start() as ns:
        sites = [{"id": "subject-01", "url": ns.site_url("subject-01")}]
        for _ in range(ROUNDS):
            for process in _ingest_processes(settings, sites):
                assert process.returncode == 0, process.stderr[-2000:]
                assert "Traceback" not in process.stderr
            catalog = load_lake_catalog(settings)
            for collection in ("entries", "treatments"):
                table = catalog.load_table(f"raw.{collection}")
                rows = table.scan().to_arrow()
                assert rows.num_rows == pc.count_distinct(rows["source_id"]).as_py() > 0, collection
                assert table.properties.items() >= NO_BLIND_RETRY.items()
            rejects = catalog.load_table("raw.rejects").scan().to_arrow()
            assert rejects.num_rows == pc.count_distinct(rejects["reject_id"]).as_py()
        expected = ns.stores["subject-01"].count("entries", include_deleted=True)
        entries = load_lake_catalog(settings).load_table("raw.entries").scan().to_arrow()
        # the entry with no date is invisible to v1; the rest are rows or rejects
        assert (
            entries.num_rows + len(rejects.filter(pc.equal(rejects["collection"], "entries")))
            == expected - 1
        )
