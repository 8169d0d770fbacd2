"""The whole lakehouse job against the embedded one, from the same Nightscout data.

One fake Nightscout feeds two runs:
- embedded: `local` profile, `run_pipeline` → dbt on DuckDB → write-back to the local lake;
- lakehouse, write-audit-publish as a person runs it (subprocesses): `NESSIE_REF=dev cascade run
  --promote` on the `lakehouse` profile → Nessie `dev` on MinIO → dbt-trino and its tests → one
  Nessie merge into `main`; then `cascade publish` from `main` → PostgreSQL.

Every silver, gold and mart table must be the same on both engines, row by row, and the marts in
PostgreSQL must be the embedded lake's marts. Floating point: each number within a relative
1e-9 (absolute 1e-9 near zero) of the other engine's, since the engines sum in different orders;
everything else (keys, dates, instants, counts, flags, text) must be equal. The ingest lineage
columns (`_cascade_ingested_at`, `_cascade_load_id`, ...) say when each run loaded a record, so they
are compared by presence only.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from cascade.config import Settings, SiteConfig, load_settings
from cascade.lake.catalog import load_lake_catalog
from cascade.pipeline import run_pipeline
from cascade_dev.fake_nightscout.server import FakeNightscout

pytestmark = [pytest.mark.stack, pytest.mark.integration, pytest.mark.timeout(2400)]

REL_TOL = 1e-9
ABS_TOL = 1e-9
COMPARED_NAMESPACES = ("silver", "gold", "marts")
LINEAGE_PREFIX = "_cascade_"


def _cell(value: Any) -> Any:
    """One value in a form both engines' readers agree on (numbers as float, for the tolerance)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        return float(value)
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # Floats rounded so a last-digit difference cannot reorder rows; None sorts first.
    return tuple(
        (value is not None, round(value, 6) if isinstance(value, float) else value) for value in row
    )


def _rows(columns: Sequence[str], records: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    compared = [c for c in columns if not c.startswith(LINEAGE_PREFIX)]
    rows = [tuple(_cell(record[c]) for c in compared) for record in records]
    return sorted(rows, key=_sort_key)


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or math.isclose(
            left, right, rel_tol=REL_TOL, abs_tol=ABS_TOL
        )
    return bool(left == right)


def assert_same_rows(
    name: str, columns: Sequence[str], left: list[tuple[Any, ...]], right: list[tuple[Any, ...]]
) -> None:
    assert len(left) == len(right), f"{name}: {len(left)} rows against {len(right)}"
    columns = [c for c in columns if not c.startswith(LINEAGE_PREFIX)]
    for number, (a, b) in enumerate(zip(left, right, strict=True)):
        differing = [
            f"{column}: {x!r} != {y!r}"
            for column, x, y in zip(columns, a, b, strict=True)
            if not _same(x, y)
        ]
        assert not differing, f"{name} row {number}: {'; '.join(differing)}"


def lake_tables(settings: Settings) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every silver, gold and mart table of a lake: its columns and its sorted rows."""
    catalog = load_lake_catalog(settings)
    tables = {}
    for namespace in COMPARED_NAMESPACES:
        for identifier in catalog.list_tables(namespace):
            name = ".".join(identifier)
            data = catalog.load_table(name).scan().to_arrow()
            tables[name] = (data.column_names, _rows(data.column_names, data.to_pylist()))
    return tables


def _environment(settings: Settings, stack: Settings, **extra: str) -> dict[str, str]:
    """The lakehouse profile as a person sets it: environment variables only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIGHTSCOUT_", "CASCADE_", "ICEBERG_", "MARTS_", "NESSIE_", "S3_"))
        and not k.startswith("TRINO_")
    }
    env.update(
        CASCADE_PROFILE="lakehouse",
        CASCADE_HOME=str(settings.lake.home),
        NESSIE_URI=settings.nessie.uri,
        NESSIE_REF=settings.nessie.ref,
        S3_ENDPOINT=settings.s3.endpoint,
        S3_ACCESS_KEY_ID=stack.stack.minio_root_user.get_secret_value(),
        S3_SECRET_ACCESS_KEY=stack.stack.minio_root_password.get_secret_value(),
        S3_REGION=settings.s3.region,
        TRINO_HOST=settings.trino.host,
        TRINO_PORT=str(settings.trino.port),
        NIGHTSCOUT_SITES=json.dumps(
            [{"id": s.id, "url": s.url} for s in settings.nightscout.sites()]
        ),
        COLUMNS="200",
        **extra,
    )
    return env


def _cascade(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cascade", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=env["CASCADE_HOME"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def nightscout() -> Iterator[FakeNightscout]:
    """Two people, 16 days, with the synthetic dirty records (duplicates, error codes, deletions)."""
    with FakeNightscout.synthetic(subjects=2, days=16, seed=53).start() as ns:
        yield ns


@pytest.fixture(scope="module")
def embedded(nightscout: FakeNightscout, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = load_settings(
        cascade_home=tmp_path_factory.mktemp("embedded"),
        nightscout_sites=[
            SiteConfig(id=s, url=nightscout.site_url(s)) for s in nightscout.site_ids
        ],
    )
    run_pipeline(settings)
    return settings


@pytest.fixture(scope="module")
def lakehouse_run(
    nightscout: FakeNightscout,
    stack: Settings,
    lakehouse: Callable[..., Settings],
    fresh_main_and_dev: Callable[[], None],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Settings, str]:
    """`cascade run --promote` on dev through Trino; settings on main and what the command printed."""
    fresh_main_and_dev()
    home = tmp_path_factory.mktemp("lakehouse")
    on_dev = lakehouse(home, nightscout, "dev")
    result = _cascade("run", "--promote", env=_environment(on_dev, stack))
    return on_dev.with_values(**{"nessie_ref": "main"}), result.stdout


def test_cascade_run_on_the_lakehouse_builds_on_dev_and_promotes_into_main(
    lakehouse_run: tuple[Settings, str],
) -> None:
    settings, printed = lakehouse_run
    assert "run ok" in printed and "(trino," in printed
    assert "tests passed" in printed
    assert "promote ok: merged dev @" in printed
    catalog = load_lake_catalog(settings)  # main
    dev = load_lake_catalog(settings.with_values(**{"nessie_ref": "dev"}))
    assert catalog.load_table("raw.entries").current_snapshot() is not None
    for name in ("raw.entries", "silver.fct_glucose_readings", "marts.mrt_agp"):
        assert catalog.load_table(name).metadata_location == dev.load_table(name).metadata_location
    marts = {".".join(t) for t in catalog.list_tables("marts")}
    assert marts == {
        "marts.mrt_agp",
        "marts.mrt_daily_summary",
        "marts.mrt_glucose_hourly_patterns",
        "marts.mrt_glucose_overview",
        "marts.mrt_time_in_range",
    }


def test_duckdb_and_trino_build_the_same_tables_row_by_row(
    embedded: Settings, lakehouse_run: tuple[Settings, str]
) -> None:
    on_duckdb = lake_tables(embedded)
    on_trino = lake_tables(lakehouse_run[0])
    assert sorted(on_duckdb) == sorted(on_trino)
    assert {"gold.glucose_metrics_14d", "gold.agp_percentiles", "gold.glycemic_events"} <= set(
        on_duckdb
    )
    for name, (columns, rows) in on_duckdb.items():
        trino_columns, trino_rows = on_trino[name]
        assert columns == trino_columns, name
        assert rows, f"{name} is empty: the comparison would prove nothing"
        assert_same_rows(name, columns, rows, trino_rows)


def test_published_lakehouse_marts_equal_the_embedded_marts(
    embedded: Settings, lakehouse_run: tuple[Settings, str], stack: Settings
) -> None:
    settings, _ = lakehouse_run
    dsn = stack.stack.marts_dsn
    schema = "marts_lakehouse"
    printed = _cascade(
        "publish",
        env=_environment(settings, stack, MARTS_DATABASE_URL=dsn, MARTS_SCHEMA=schema),
    ).stdout
    assert f"publish ok: 5 marts published to {schema}" in printed

    with psycopg.connect(dsn) as con:
        published = {}
        for name, (columns, rows) in lake_tables(embedded).items():
            if not name.startswith("marts."):
                continue
            cursor = con.execute(f'select * from {schema}."{name.removeprefix("marts.")}"')
            pg_columns = [d.name for d in cursor.description or ()]
            assert pg_columns == columns, name
            records = [dict(zip(pg_columns, r, strict=True)) for r in cursor.fetchall()]
            assert_same_rows(name, columns, rows, _rows(columns, records))
            published[name] = len(rows)
        provenance = con.execute(
            f"select source_table, nessie_ref, nessie_hash from {schema}._published"
        ).fetchall()
    assert len(published) == 5

    # Each mart records the Nessie commit of main it came from: main's head after the run.
    head = httpx.get(f"{settings.nessie.uri}/api/v2/trees/main").json()["reference"]["hash"]
    assert sorted(provenance) == sorted(
        ("marts." + n.split(".")[1], "main", head) for n in published
    )
