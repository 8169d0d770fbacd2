"""The runner's pieces without dbt: project location, fingerprints, the Iceberg write-back."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
import yaml
from pyiceberg.catalog import Catalog

from cascade.config import load_settings
from cascade.exceptions import TransformError
from cascade.transform.build import build_args, render_profiles
from cascade.transform.project import PROJECT_DIR_ENV, project_dir, project_fingerprint
from cascade.transform.trino import trino_target
from cascade.transform.workspace import Workspace
from cascade.transform.writeback import FINGERPRINT_PROPERTY, fingerprint, write_table


def test_project_dir_is_the_one_inside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROJECT_DIR_ENV, raising=False)
    directory = project_dir()
    assert directory.parts[-3:] == ("cascade", "transform", "dbt_project")
    assert (directory / "dbt_project.yml").is_file()
    # In a checkout the package's copy is the repository's transforms/dbt itself, not a copy.
    repository = Path(__file__).resolve().parents[2]
    assert directory.resolve() == repository / "transforms" / "dbt"


def test_project_dir_override_and_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    settings = load_settings()
    assert project_dir(settings.transform.dbt_project_dir) == tmp_path.resolve()
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path / "missing"))
    settings = load_settings()
    with pytest.raises(TransformError, match=PROJECT_DIR_ENV):
        project_dir(settings.transform.dbt_project_dir)


def test_project_fingerprint_follows_model_and_macro_definitions(tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.sql").write_text("select 1 as a")
    first = project_fingerprint(tmp_path)
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text("{}")  # build output is not a definition
    assert project_fingerprint(tmp_path) == first
    (tmp_path / "models" / "a.sql").write_text("select 2 as a")
    assert project_fingerprint(tmp_path) != first


def test_build_args(tmp_path: Path) -> None:
    workspace = Workspace(
        tmp_path / "t.duckdb", tmp_path / "ext", tmp_path / "target", tmp_path / "logs"
    )
    default = build_args(
        tmp_path, workspace.dbt_target(), select=None, full_refresh=False, unit_tests=False
    )
    assert default[0] == "build"
    assert default[default.index("--target") + 1] == "local"
    assert default[default.index("--exclude-resource-type") + 1] == "unit_test"
    assert "--full-refresh" not in default
    chosen = build_args(
        tmp_path,
        workspace.dbt_target(),
        select=["gold", "dim_subject+"],
        full_refresh=True,
        unit_tests=True,
    )
    assert chosen[chosen.index("--select") + 1 :][:2] == ["gold", "dim_subject+"]
    assert "--full-refresh" in chosen and "--exclude-resource-type" not in chosen
    assert chosen[chosen.index("--profiles-dir") + 1] == str(tmp_path / "profiles")


def test_profiles_are_rendered_for_the_run_without_touching_the_environment(
    tmp_path: Path,
) -> None:
    before = dict(os.environ)
    workspace = Workspace(
        tmp_path / "t.duckdb", tmp_path / "ext", tmp_path / "target", tmp_path / "logs"
    )
    local = yaml.safe_load(
        (render_profiles(project_dir(), workspace.dbt_target(3)) / "profiles.yml").read_text()
    )["cascade"]
    assert local["target"] == "local"
    assert local["outputs"]["local"]["path"] == str(tmp_path / "t.duckdb")
    assert local["outputs"]["local"]["threads"] == 3
    lakehouse = load_settings(CASCADE_HOME=tmp_path, NESSIE_REF="dev", TRINO_PORT=8181)
    trino = yaml.safe_load(
        (render_profiles(project_dir(), trino_target(lakehouse)) / "profiles.yml").read_text()
    )["cascade"]
    assert trino["target"] == "dev"
    assert trino["outputs"]["dev"]["database"] == "iceberg_dev"
    assert trino["outputs"]["dev"]["port"] == 8181
    assert dict(os.environ) == before


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA gold")
    con.execute(
        "CREATE TABLE gold.metrics AS SELECT * FROM (VALUES "
        "('a', DATE '2026-01-01', 10::BIGINT, 1.5::DOUBLE, TIMESTAMPTZ '2026-01-01 00:00:00+00'), "
        "('b', DATE '2026-01-02', 20::BIGINT, NULL, TIMESTAMPTZ '2026-01-02 00:00:00+00')"
        ") AS t(site_id, local_date, reading_count, mean, built_at)"
    )
    return con


def test_fingerprint_ignores_row_order_but_not_content(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE gold.reversed AS SELECT * FROM gold.metrics ORDER BY site_id DESC")
    assert fingerprint(con, "gold.metrics") == fingerprint(con, "gold.reversed")
    con.execute("UPDATE gold.reversed SET reading_count = 11 WHERE site_id = 'a'")
    assert fingerprint(con, "gold.metrics")[0] != fingerprint(con, "gold.reversed")[0]
    con.execute(
        "CREATE TABLE gold.doubled AS SELECT * FROM gold.metrics UNION ALL SELECT * FROM gold.metrics"
    )
    con.execute(
        "CREATE TABLE gold.twice_a AS SELECT * FROM gold.doubled WHERE site_id = 'a' UNION ALL SELECT * FROM gold.doubled WHERE site_id = 'a'"
    )
    assert fingerprint(con, "gold.doubled")[0] != fingerprint(con, "gold.twice_a")[0]


def test_write_back_commits_only_changes_in_one_snapshot_each(
    con: duckdb.DuckDBPyConnection, catalog: Catalog
) -> None:
    first = write_table(
        catalog, con, namespace="gold", name="metrics", node_id="model.cascade.metrics"
    )
    assert first.committed and first.rows == 2
    table = catalog.load_table("gold.metrics")
    assert table.properties[FINGERPRINT_PROPERTY] == first.fingerprint
    assert table.scan().to_arrow().num_rows == 2
    snapshots = len(table.snapshots())

    again = write_table(
        catalog, con, namespace="gold", name="metrics", node_id="model.cascade.metrics"
    )
    assert not again.committed
    assert len(catalog.load_table("gold.metrics").snapshots()) == snapshots

    con.execute("UPDATE gold.metrics SET reading_count = 12 WHERE site_id = 'a'")
    changed = write_table(
        catalog, con, namespace="gold", name="metrics", node_id="model.cascade.metrics"
    )
    assert changed.committed and changed.snapshot_id != first.snapshot_id
    rows = catalog.load_table("gold.metrics").scan().to_arrow().to_pylist()
    assert sorted(r["reading_count"] for r in rows) == [12, 20]


def test_write_back_follows_schema_changes(
    con: duckdb.DuckDBPyConnection, catalog: Catalog
) -> None:
    write_table(catalog, con, namespace="gold", name="metrics", node_id="n")
    con.execute("ALTER TABLE gold.metrics ADD COLUMN gri DOUBLE DEFAULT 12.5")
    con.execute("ALTER TABLE gold.metrics DROP COLUMN mean")
    evolved = write_table(catalog, con, namespace="gold", name="metrics", node_id="n")
    assert evolved.committed and not evolved.recreated
    table = catalog.load_table("gold.metrics")
    assert [f.name for f in table.schema().fields] == [
        "site_id",
        "local_date",
        "reading_count",
        "built_at",
        "gri",
    ]
    assert {r["gri"] for r in table.scan().to_arrow().to_pylist()} == {12.5}

    con.execute("ALTER TABLE gold.metrics ALTER reading_count TYPE VARCHAR")  # no Iceberg promotion
    recreated = write_table(catalog, con, namespace="gold", name="metrics", node_id="n")
    assert recreated.committed and recreated.recreated
    rows = catalog.load_table("gold.metrics").scan().to_arrow().to_pylist()
    assert sorted(r["reading_count"] for r in rows) == ["10", "20"]
