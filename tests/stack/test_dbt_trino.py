"""The same dbt project, unchanged, on Trino over Nessie (target `dev` → catalog iceberg_dev)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dbt.cli.main import dbtRunner

from cascade.config import Settings
from cascade.lake.ingest import ingest
from cascade.source.fake.server import FakeNightscout
from cascade.stack import StackSettings, trino_query
from cascade.transform.project import project_dir

pytestmark = [pytest.mark.stack, pytest.mark.integration, pytest.mark.timeout(1800)]


def test_dbt_builds_and_tests_every_model_on_trino(
    stack: StackSettings, lakehouse: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeNightscout.synthetic(subjects=1, days=15, seed=41).start() as ns:
        ingest(lakehouse(tmp_path / "dev", ns, "dev"))
    monkeypatch.setenv("TRINO_HOST", stack.stack_host)
    monkeypatch.setenv("TRINO_PORT", str(stack.trino_port))
    monkeypatch.setenv("CASCADE_DUCKDB_PATH", str(tmp_path / "unused.duckdb"))
    monkeypatch.setenv("CASCADE_DUCKDB_EXTENSION_DIR", str(tmp_path))
    project = str(project_dir())
    for _ in range(2):  # a full build, then the incremental path on the same tables
        result = dbtRunner().invoke(["build", "--project-dir", project, "--profiles-dir", project, "--target", "dev",
                                     "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")])
        failed = [r.node.name for r in (result.result or []) if r.status in ("error", "fail")]
        assert result.success and not failed, failed or result.exception
    overview = trino_query(stack.trino_uri, "select site_id, tir_pct + tbr_pct + tar_pct from iceberg_dev.marts.mrt_glucose_overview")
    assert [row[0] for row in overview] == ["subject-01"]
    assert abs(overview[0][1] - 100) < 0.01
    assert trino_query(stack.trino_uri, "select count(*) from iceberg_dev.gold.agp_percentiles")[0][0] > 0
