"""The `lakehouse` profile on the real stack: fake Nightscout → Nessie (REST) + MinIO → Trino, DuckDB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest

from cascade.config import Settings
from cascade.doctor import run_checks
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.serve.query import run_query
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.synthetic import dirty_record_counts
from cascade_dev.stack import trino_query

pytestmark = [pytest.mark.stack, pytest.mark.integration, pytest.mark.timeout(1800)]

DAYS = 3


def test_ingest_lands_in_nessie_on_minio_and_every_engine_reads_it(
    stack: Settings,
    lakehouse: Callable[..., Settings],
    empty_branch: Callable[[str], None],
    tmp_path: Path,
) -> None:
    empty_branch("main")
    empty_branch("dev")
    with FakeNightscout.synthetic(subjects=1, days=DAYS, seed=31).start() as ns:
        settings = lakehouse(tmp_path / "main", ns, "main")
        checks = {check.name: check for check in run_checks(settings)}
        assert all(check.ok for check in checks.values()), checks
        assert "dbt target prod for NESSIE_REF main" in checks["trino"].detail
        ingest(settings)
        expected = (
            ns.stores["subject-01"].count("entries")
            - dirty_record_counts(DAYS)["rejectable_entries"]
        )

    table = load_lake_catalog(settings).load_table("raw.entries")
    assert table.scan().to_arrow().num_rows == expected
    assert table.metadata_location.startswith("s3://lake/warehouse/")

    # Trino reads it through the `iceberg` catalog (Nessie main), at once.
    assert trino_query(stack.stack_trino_uri, "select count(*) from iceberg.raw.entries") == [
        [expected]
    ]
    partitions = trino_query(
        stack.stack_trino_uri, 'select count(*) from iceberg.raw."entries$partitions"'
    )[0][0]
    days = trino_query(
        stack.stack_trino_uri, "select count(distinct date(event_at)) from iceberg.raw.entries"
    )[0][0]
    assert partitions == days >= DAYS

    # The data files sit in daily partitions on MinIO, and the landed pages under stage/.
    s3 = pafs.S3FileSystem(
        access_key=stack.stack.minio_root_user.get_secret_value(),
        secret_key=stack.stack.minio_root_password.get_secret_value(),
        endpoint_override=stack.stack.s3_endpoint.split("//", 1)[1],
        scheme="http",
        region=stack.s3.region,
    )
    files = [
        f.path
        for f in s3.get_file_info(pafs.FileSelector("lake/warehouse", recursive=True))
        if f.path.endswith(".parquet")
    ]
    assert any("/event_day=" in f for f in files)
    staged = s3.get_file_info(
        pafs.FileSelector("lake/stage/nightscout/subject-01/entries", recursive=True)
    )
    assert any(f.path.endswith(".json.zst") for f in staged)

    # DuckDB reads the same snapshot (cascade query).
    _, rows = run_query(settings, "select count(*) from raw.entries")
    assert rows == [(expected,)]


def test_dev_and_main_are_isolated(
    stack: Settings, lakehouse: Callable[..., Settings], tmp_path: Path
) -> None:
    with FakeNightscout.synthetic(subjects=2, days=1, seed=32).start() as ns:
        dev = lakehouse(tmp_path / "dev", ns, "dev")
        ingest(dev, site_ids=["subject-02"], collections=("treatments",))
    on_dev = load_lake_catalog(dev).load_table("raw.treatments").scan().to_arrow()
    assert pc.count_distinct(on_dev["site_id"]).as_py() >= 1
    on_main = trino_query(
        stack.stack_trino_uri,
        "select count(*) from iceberg.raw.treatments where site_id = 'subject-02'",
    )
    on_dev_trino = trino_query(
        stack.stack_trino_uri,
        "select count(*) from iceberg_dev.raw.treatments where site_id = 'subject-02'",
    )
    assert on_main == [[0]]
    assert on_dev_trino == [[on_dev.filter(pc.equal(on_dev["site_id"], "subject-02")).num_rows]]
