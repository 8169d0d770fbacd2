"""`transform()` on the lakehouse profile: the same dbt project, built by Trino on Nessie's `main`
(dbt target `prod`, Trino catalog `iceberg`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cascade.config import Settings
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.ingest import ingest
from cascade.transform import transform
from cascade.transform.trino import PROJECT_PROPERTY
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.stack import trino_query

pytestmark = [pytest.mark.stack, pytest.mark.integration, pytest.mark.timeout(1800)]

INCREMENTAL = {
    "silver.fct_glucose_readings",
    "gold.glucose_metrics_daily",
    "gold.glucose_metrics_14d",
    "gold.agp_percentiles",
    "gold.glycemic_events",
}


def test_the_project_builds_on_trino_on_main_then_runs_incrementally(
    stack: Settings,
    lakehouse: Callable[..., Settings],
    empty_branch: Callable[[str], None],
    tmp_path: Path,
) -> None:
    empty_branch("main")
    with FakeNightscout.synthetic(subjects=1, days=15, seed=41).start() as ns:
        settings = lakehouse(tmp_path / "main", ns, "main")
        ingest(settings)

    first = transform(settings)
    assert first.engine == "trino" and first.duckdb_path is None
    assert (tmp_path / "main" / "dbt" / "prod" / "target" / "run_results.json").is_file()
    assert {t.identifier for t in first.tables} >= INCREMENTAL | {"marts.mrt_glucose_overview"}
    assert all(t.committed and t.rows > 0 for t in first.tables)
    assert len(first.tests) > 100 and not any(n.failed for n in first.nodes)

    # The tables are on main (catalog iceberg), daily partitions for readings.
    overview = trino_query(
        stack.stack_trino_uri,
        "select site_id, tir_pct + tbr_pct + tar_pct from iceberg.marts.mrt_glucose_overview",
    )
    assert [row[0] for row in overview] == ["subject-01"]
    assert abs(overview[0][1] - 100) < 0.01
    partitions, days = trino_query(
        stack.stack_trino_uri,
        'select (select count(*) from iceberg.silver."fct_glucose_readings$partitions"), '
        "count(distinct date(event_at)) from iceberg.silver.fct_glucose_readings",
    )[0]
    assert partitions == days >= 15

    # No new data: the incremental models add no snapshot; the table models are rebuilt.
    second = transform(settings)
    assert not second.full_refresh
    unchanged = {t.identifier for t in second.tables if not t.committed}
    assert unchanged == INCREMENTAL
    rows = {t.identifier: t.rows for t in first.tables}
    assert {t.identifier: t.rows for t in second.tables} == rows

    # The incremental tables carry the project definition that built them; another one means
    # the models changed, and the next run rebuilds them from scratch.
    readings = load_lake_catalog(settings).load_table("silver.fct_glucose_readings")
    assert readings.properties[PROJECT_PROPERTY]
    with readings.transaction() as tx:
        tx.set_properties({PROJECT_PROPERTY: "an older definition"})
    third = transform(settings, select=["fct_glucose_readings"])
    assert third.full_refresh
    assert [t.identifier for t in third.tables] == ["silver.fct_glucose_readings"]
    assert third.tables[0].committed and third.tables[0].rows == rows["silver.fct_glucose_readings"]
