"""A load killed between pages resumes from its last commit and ends with every record once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from cascade.config import Settings, SiteConfig
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.lake.tables import read_cursor
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.synthetic import dirty_record_counts

pytestmark = pytest.mark.integration


TOKEN = "reader-0123456789abcdef"
REPORTER = Path(__file__).with_name("commit_reporter.py")


@pytest.mark.parametrize("v3", [True, False], ids=["v3-history", "v1-paging"])
def test_kill_between_pages_then_resume(settings: Settings, v3: bool) -> None:
    days = 4
    # v3: everything uploaded through v3 and read with a token; v1: uploaded and read through v1.
    uploaded_through = "v3" if v3 else "v1"
    with FakeNightscout.synthetic(
        subjects=1,
        days=days,
        seed=21,
        uploaded_through=uploaded_through,
        tokens=[TOKEN],
        auth_default_roles="readable",
    ).start() as ns:
        site = {"id": "subject-01", "url": ns.site_url("subject-01")} | (
            {"token": TOKEN} if v3 else {}
        )
        ns.set_random_faults(1.0, ["slow"], delay_seconds=0.15)  # every page takes a while
        env = dict(
            os.environ,
            CASCADE_HOME=str(settings.lake.home),
            NIGHTSCOUT_SITES=json.dumps([site]),
            NIGHTSCOUT_PAGE_SIZE="50",
            INGEST_COMMIT_ROWS="150",
        )
        process = subprocess.Popen(
            [sys.executable, str(REPORTER), "ingest", "--collections", "entries"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        # The child reports each commit; kill it once it has made a few (EOF: it ended first).
        assert process.stdout is not None
        reported = 0
        for line in process.stdout:
            reported += line.strip() == "committed raw.entries"
            if reported >= 4:  # the table's birth (an empty snapshot) and three loads
                break
        process.send_signal(signal.SIGKILL)
        process.wait()
        committed = len(load_lake_catalog(settings).load_table("raw.entries").snapshots())
        assert committed >= 3, "the load should have committed a few batches before the kill"

        table = load_lake_catalog(settings).load_table("raw.entries")
        cursor = read_cursor(table, "subject-01")
        rows_at_kill = table.scan().to_arrow()
        dirty = dirty_record_counts(days)
        # Through v1 an entry with no date matches no v1 query, so it is neither row nor reject.
        total = ns.stores["subject-01"].count("entries") - dirty["rejectable_entries"]
        assert 0 < rows_at_kill.num_rows < total
        # The cursor covers only what is committed: every record it claims is in the table.
        if v3:
            covered = [
                d
                for d in ns.stores["subject-01"].documents("entries")
                if d["srvModified"] < cursor["v3"]["srv_modified"]
            ]
            present = set(rows_at_kill["source_id"].to_pylist())
            assert {
                d["identifier"] for d in covered if "date" in d and d["date"] > 946684800000
            } - present == set()
        else:
            assert "pending" in cursor["v1"]

        ns.clear_faults()
        ns.reset_stats()
        ingest(
            settings.with_values(
                **{"nightscout_sites": [SiteConfig(**site)], "nightscout_page_size": 50}
            ),
            collections=("entries",),
        )
        resumed_pages = sum(1 for r in ns.requests if "/entries" in r.path)
        rows = load_lake_catalog(settings).load_table("raw.entries").scan().to_arrow()
        assert rows.num_rows == total
        assert pc.count_distinct(rows["source_id"]).as_py() == total
        assert resumed_pages < total / 50  # it resumed; it did not start over
