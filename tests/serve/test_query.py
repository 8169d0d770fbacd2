"""`cascade query` reads the lake and nothing else, and never changes it.

A small real lake (fake Nightscout -> ingest) is built once; every refused statement is run
against it and the lake's files (data, metadata, catalog, stage) must be byte-identical after.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from cascade.config import Settings, SiteConfig, load_settings
from cascade.exceptions import QueryError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.duck import attach_catalog, confine_to_lake, connect, lake_roots
from cascade.lake.ingest import ingest
from cascade.serve.query import run_query
from cascade_dev.fake_nightscout.server import FakeNightscout

pytestmark = pytest.mark.integration

_ENV = (
    "NIGHTSCOUT_URL",
    "NIGHTSCOUT_SITES",
    "NIGHTSCOUT_API_SECRET",
    "NIGHTSCOUT_TOKEN",
    "CASCADE_HOME",
    "CASCADE_PROFILE",
    "ICEBERG_WAREHOUSE_PATH",
    "ICEBERG_STAGING_PATH",
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Two people, two days of synthetic data, ingested once for the module."""
    home = tmp_path_factory.mktemp("query")
    with pytest.MonkeyPatch.context() as patch:
        for name in _ENV:
            patch.delenv(name, raising=False)
        patch.chdir(home)
        settings = load_settings(cascade_home=home / "lake", nightscout_backoff_seconds=0.01)
        with FakeNightscout.synthetic(subjects=2, days=2, seed=7).start() as ns:
            settings = settings.with_values(
                **{"nightscout_sites": [SiteConfig(id=s, url=ns.site_url(s)) for s in ns.site_ids]}
            )
            ingest(settings)
        yield settings


@pytest.fixture(scope="module")
def data_file(lake: Settings) -> Path:
    """A live data file of raw.entries' current snapshot."""
    table = load_lake_catalog(lake).load_table("raw.entries")
    path = Path(table.inspect.files()["file_path"][0].as_py().removeprefix("file://"))
    assert path.is_file() and path.is_relative_to(lake.lake.warehouse_path)
    return path


def lake_files(settings: Settings) -> dict[str, str]:
    """Every file of the lake's home (catalog, warehouse, stage) with its SHA-256."""
    home = settings.lake.home
    return {
        str(path.relative_to(home)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(home.rglob("*"))
        if path.is_file()
    }


def refused(settings: Settings, sql: str) -> str:
    """The one-line QueryError `sql` gets; the lake must not have changed."""
    before = lake_files(settings)
    with pytest.raises(QueryError) as caught:
        run_query(settings, sql)
    assert lake_files(settings) == before
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_selects_over_the_lake_work(lake: Settings) -> None:
    entries = load_lake_catalog(lake).load_table("raw.entries").scan().to_arrow()

    columns, rows = run_query(
        lake, "select site_id, count(*) as n from raw.entries group by 1 order by 1"
    )
    assert columns == ["site_id", "n"]
    assert [r[0] for r in rows] == ["subject-01", "subject-02"]
    assert sum(r[1] for r in rows) == entries.num_rows

    # A join of two Iceberg views, a CTE, and several statements (the last one's result).
    _, joined = run_query(
        lake,
        "with t as (select site_id, count(*) as treatments from raw.treatments group by 1) "
        "select e.site_id, count(*) as entries, any_value(t.treatments) as treatments "
        "from raw.entries e join t using (site_id) group by 1 order by 1",
    )
    assert [r[0] for r in joined] == ["subject-01", "subject-02"] and all(r[2] > 0 for r in joined)
    columns, rows = run_query(lake, "select 1 as a; select count(*) as b from raw.profile")
    assert columns == ["b"] and rows[0][0] > 0

    # DESCRIBE, SUMMARIZE, PRAGMA of a read and EXPLAIN (ANALYZE) of a SELECT are reads too.
    _, described = run_query(lake, "describe raw.entries")
    assert "site_id" in [r[0] for r in described]
    assert run_query(lake, "summarize raw.treatments")[1]
    assert run_query(lake, "pragma version")[1][0][0].startswith("v")
    columns, plan = run_query(lake, "explain analyze select count(*) from raw.entries")
    assert columns == ["explain_key", "explain_value"] and plan
    _, plan = run_query(lake, "-- the plan as JSON\nexplain (format json) select 1")
    assert plan[0][1].lstrip().startswith("[")

    # The lake's own files may be read directly: they are the lake.
    location = load_lake_catalog(lake).load_table("raw.entries").metadata_location
    _, snapshots = run_query(lake, f"select count(*) from iceberg_snapshots('{location}')")
    assert snapshots[0][0] >= 1


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("copy (select 1 as x) to '{data}' (format parquet)", "COPY statements"),
        ("copy raw.entries from '{data}'", "COPY statements"),
        ("select 1; copy (select 1 as x) to '{data}' (format parquet)", "COPY statements"),
        ("explain analyze copy (select 1 as x) to '{data}' (format parquet)", "EXPLAIN of a COPY"),
        ("attach '{home}/other.duckdb' as other", "ATTACH statements"),
        ("attach ':memory:' as scratch", "ATTACH statements"),
        ("install httpfs", "INSTALL statements"),
        ("load httpfs", "LOAD statements"),
        ("force install httpfs", "FORCE INSTALL statements"),
        ("create table stolen as select * from raw.entries", "CREATE statements"),
        ("create or replace view raw.entries as select 1", "CREATE statements"),
        ("insert into raw.entries select * from raw.entries", "INSERT statements"),
        ("delete from raw.entries", "DELETE statements"),
        ("drop view raw.entries", "DROP statements"),
        ("set enable_external_access = true", "SET statements"),
        ("reset lock_configuration", "RESET statements"),
        ("pragma enable_profiling", "PRAGMA statements"),
        ("export database '{home}/export'", "EXPORT statements"),
        ("call pragma_version()", "CALL statements"),
        ("checkpoint", "CHECKPOINT statements"),
        ("begin transaction", "BEGIN statements"),
        ("pivot raw.entries on site_id using count(*)", "CREATE statements"),
    ],
)
def test_statements_that_are_not_reads_are_refused(
    lake: Settings, data_file: Path, sql: str, kind: str
) -> None:
    statement = sql.format(data=data_file, home=lake.lake.home)
    message = refused(lake, statement)
    assert message.startswith(f"cascade query is read-only: {kind}"), message
    assert "not allowed (only SELECT)" in message, message


def test_the_data_file_is_untouched_and_still_read(lake: Settings, data_file: Path) -> None:
    before = data_file.read_bytes()
    refused(lake, f"copy (select 1 as x) to '{data_file}' (format parquet)")
    assert data_file.read_bytes() == before
    _, rows = run_query(lake, "select count(*) from raw.entries")
    assert rows[0][0] == load_lake_catalog(lake).load_table("raw.entries").scan().count()


@pytest.mark.parametrize(
    "sql",
    [
        "select * from read_text('/etc/passwd')",
        "select * from read_csv('/etc/passwd', sep = ':')",
        "select * from glob('/etc/*')",
        "select * from read_blob('{home}/catalog.db')",  # the catalog is beside the warehouse
        "select * from read_text('{warehouse}/../catalog.db')",
        "select * from read_text('{home}/stage/**')",
        "select * from read_text('{warehouse}-old/x')",
        "select * from read_csv('http://127.0.0.1:9/x.csv')",
        "import database '{home}'",
    ],
)
def test_reading_outside_the_lake_is_refused(lake: Settings, sql: str) -> None:
    statement = sql.format(home=lake.lake.home.resolve(), warehouse=lake.lake.warehouse_path)
    message = refused(lake, statement)
    assert message.startswith("cascade query reads only the lake"), message
    assert "reading outside the lake is not allowed" in message


@pytest.mark.parametrize(
    ("sql", "function"),
    [
        # Logging to files would write them under an allowed directory: into the warehouse.
        (
            "select * from enable_logging(storage = 'file', storage_path = '{logs}')",
            "enable_logging",
        ),
        (
            "select * from \"Enable_Logging\" /* quoted */ (storage_path = '{logs}')",
            "enable_logging",
        ),
        ("select * from query('select 1')", "query"),
        ("select * from checkpoint()", "checkpoint"),
    ],
)
def test_table_functions_that_are_not_reads_are_refused(
    lake: Settings, sql: str, function: str
) -> None:
    logs = lake.lake.warehouse_path / "logs"
    message = refused(lake, sql.format(logs=logs))
    assert message.startswith(f"cascade query is read-only: the function {function}()"), message
    assert not logs.exists()


def test_names_of_those_functions_in_strings_and_aliases_are_fine(lake: Settings) -> None:
    columns, rows = run_query(lake, "select 'enable_logging(' as query, 1 as checkpoint")
    assert columns == ["query", "checkpoint"] and rows == [("enable_logging(", 1)]


def test_empty_sql_is_an_error(lake: Settings) -> None:
    assert refused(lake, " -- nothing") == "no SQL statement to run"


def test_the_confined_connection_refuses_on_its_own(lake: Settings, tmp_path: Path) -> None:
    """DuckDB's settings hold even for SQL that never went through the statement check."""
    con = connect(settings=lake)
    try:
        attach_catalog(con, load_lake_catalog(lake))
        confine_to_lake(con, lake, tmp_path)
        assert con.execute("select count(*) from raw.entries").fetchone() == (
            load_lake_catalog(lake).load_table("raw.entries").scan().count(),
        )
        for sql in (
            f"copy (select 1) to '{tmp_path.parent / 'out.csv'}'",
            "select * from read_text('/etc/passwd')",
            f"attach '{tmp_path.parent / 'other.duckdb'}'",
            "load httpfs",
            "install httpfs",
        ):
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql)
        for setting in (
            "enable_external_access = true",
            "lock_configuration = false",
            "allowed_directories = ['/']",
        ):
            with pytest.raises(duckdb.Error, match="configuration has been locked"):
                con.execute(f"SET {setting}")
        allowed = con.execute("select current_setting('allowed_directories')").fetchone()
        assert allowed is not None
        assert sorted(allowed[0]) == sorted([*lake_roots(lake), f"{tmp_path}{os.sep}"])
    finally:
        con.close()
    assert not (tmp_path.parent / "out.csv").exists()


def test_the_lake_roots_are_the_warehouse_only(tmp_path: Path) -> None:
    local = load_settings(cascade_home=tmp_path / "lake")
    assert lake_roots(local) == [f"{(tmp_path / 'lake' / 'warehouse').resolve()}{os.sep}"]
    lakehouse = load_settings(
        cascade_home=tmp_path / "lake",
        cascade_profile="lakehouse",
        lake_warehouse="s3://lake/warehouse/",
    )
    assert lake_roots(lakehouse) == ["s3://lake/warehouse/"]


def test_cascade_query_refuses_a_copy_over_a_data_file(lake: Settings, data_file: Path) -> None:
    """The command as a person runs it: exit status 1, one line, the data file unchanged."""
    before = data_file.read_bytes()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIGHTSCOUT_", "CASCADE_", "ICEBERG_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "cascade", "query", f"COPY (select 1) TO '{data_file}'"],
        env=dict(env, CASCADE_HOME=str(lake.lake.home), COLUMNS="300"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cascade query is read-only: COPY statements are not allowed" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert data_file.read_bytes() == before
