"""`cascade publish` without PostgreSQL: refusals, DSN handling, type mapping, grains, Nessie."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from pydantic import SecretStr
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    UUIDType,
)

from cascade.config import Profile, Settings, load_settings
from cascade.exceptions import ConfigurationError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.nessie import NessieClient
from cascade.publish import PublishError, mask_dsn, publish, resolve_dsn
from cascade.publish import source as source_module
from cascade.publish.dsn import scrub
from cascade.publish.schema import csv_bytes, layout_for
from cascade.publish.source import (
    expected_marts,
    load_source,
    mart_grains,
    nessie_reference_hash,
)
from cascade.transform.manifest import manifest
from cascade.transform.project import project_dir

from .conftest import MART_GRAINS

UNREACHABLE = "postgresql://marts:never-used-secret@127.0.0.1:9/marts"


@pytest.fixture
def publishing(settings: Settings) -> Settings:
    return settings.with_values(**{"marts_database_url": SecretStr(UNREACHABLE)})


def _overview_table(settings: Settings, *, rows: bool = True) -> None:
    catalog = load_lake_catalog(settings)
    catalog.create_namespace_if_not_exists("marts")
    data = pa.table({"site_id": pa.array(["a", "b"], pa.large_string()), "tir_pct": [71.5, 64.25]})
    table = catalog.create_table(("marts", "mrt_glucose_overview"), schema=data.schema)
    if rows:
        table.append(data)


def test_an_empty_lake_is_refused_with_what_to_run(publishing: Settings) -> None:
    with pytest.raises(PublishError) as failure:
        publish(publishing)
    assert "no marts" in str(failure.value) and "cascade transform" in str(failure.value)


def test_a_missing_mart_is_named(publishing: Settings) -> None:
    _overview_table(publishing)
    with pytest.raises(PublishError) as failure:
        publish(publishing)
    message = str(failure.value)
    assert (
        "marts.mrt_agp" in message
        and "marts.mrt_daily_summary" in message
        and "cascade transform" in message
    )
    assert "marts.mrt_glucose_overview" not in message.split("(the lake has")[0]
    with pytest.raises(PublishError, match=r"marts\.mrt_nope .*cascade transform"):
        publish(publishing, marts=["mrt_nope"])


def test_a_mart_without_a_snapshot_is_refused(publishing: Settings) -> None:
    _overview_table(publishing, rows=False)
    with pytest.raises(
        PublishError, match=r"marts\.mrt_glucose_overview has no data yet.*cascade transform"
    ):
        publish(publishing, marts=["mrt_glucose_overview"])


def test_the_lakehouse_publishes_only_from_main(settings: Settings) -> None:
    dev = settings.with_values(
        **{
            "cascade_profile": Profile.LAKEHOUSE,
            "nessie_ref": "dev",
            "marts_database_url": SecretStr(UNREACHABLE),
        }
    )
    with pytest.raises(PublishError) as failure:
        publish(dev)
    message = str(failure.value)
    assert (
        "NESSIE_REF is 'dev'" in message
        and "'main'" in message
        and "never-used-secret" not in message
    )


def test_the_nessie_commit_comes_from_the_branch(settings: Settings) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/main"):
            return httpx.Response(
                200,
                json={"reference": {"type": "BRANCH", "name": "main", "hash": "2e1cfa82b035c26c"}},
            )
        return httpx.Response(404, json={"message": "not found"})

    nessie = NessieClient("http://nessie.invalid", transport=httpx.MockTransport(answer))
    with nessie as client:
        assert nessie_reference_hash(settings, client=client) == "2e1cfa82b035c26c"
        with pytest.raises(PublishError, match="no branch 'gone'"):
            nessie_reference_hash(settings, "gone", client=client)
    assert seen == ["/api/v2/trees/main", "/api/v2/trees/gone"]


def test_the_lakehouse_source_pins_the_hash_its_snapshots_belong_to(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _overview_table(settings)
    local_catalog = load_lake_catalog(settings)
    hashes = iter(["a1", "b2", "b2", "b2"])  # main moves during the first look-up
    monkeypatch.setattr(source_module, "load_lake_catalog", lambda _settings: local_catalog)
    monkeypatch.setattr(
        source_module, "nessie_reference_hash", lambda _settings, *a, **k: next(hashes)
    )
    lakehouse = settings.with_values(**{"cascade_profile": Profile.LAKEHOUSE})

    source = load_source(lakehouse, ["mrt_glucose_overview"], parsed=None)

    assert (source.profile, source.nessie_ref, source.nessie_hash) == ("lakehouse", "main", "b2")
    (mart,) = source.marts
    assert (
        mart.snapshot_id
        == local_catalog.load_table(("marts", "mrt_glucose_overview"))
        .current_snapshot()
        .snapshot_id
    )


def test_the_dsn_is_shown_without_its_password(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        mask_dsn("postgresql://marts:s3cr3t@db.example:5432/marts?sslmode=require")
        == "postgresql://marts:***@db.example:5432/marts"
    )
    assert (
        mask_dsn("host=db port=5433 user=bi password='s3 cr3t' dbname=marts")
        == "postgresql://bi:***@db:5433/marts"
    )
    assert mask_dsn("postgresql:///marts") == "postgresql://localhost/marts"
    dsn = "postgresql://marts:s3cr3t@db.example:5432/marts"
    assert scrub(f'failed for {dsn}: password "s3cr3t" password=s3cr3t', dsn).count("s3cr3t") == 0

    with pytest.raises(ConfigurationError, match="MARTS_DATABASE_URL=postgresql://"):
        resolve_dsn(settings)
    with pytest.raises(ConfigurationError) as invalid:
        resolve_dsn(
            settings.with_values(**{"marts_database_url": SecretStr("host='unterminated pw=zz9")})
        )
    assert "zz9" not in str(invalid.value)
    for name in ("POSTGRES_PORT", "STACK_HOST", "MARTS_DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    lakehouse = settings.with_values(**{"cascade_profile": Profile.LAKEHOUSE})
    assert mask_dsn(resolve_dsn(lakehouse)) == "postgresql://marts:***@127.0.0.1:55432/marts"


def test_settings_refuse_unsafe_schema_and_role_names(settings: Settings) -> None:
    for bad in (
        {"marts_schema": "marts; drop"},
        {"marts_schema": "Marts"},
        {"bi_reader_role": "bi reader"},
    ):
        with pytest.raises(ConfigurationError):
            load_settings(**bad)
    assert load_settings(bi_reader_role="").marts.bi_reader_role == ""


def test_iceberg_types_map_to_postgresql_and_the_grain_gets_indexes() -> None:
    schema = Schema(
        NestedField(1, "site_id", StringType()),
        NestedField(2, "local_date", DateType(), doc="the subject's local day"),
        NestedField(3, "n", IntegerType()),
        NestedField(4, "readings", LongType()),
        NestedField(5, "tir_pct", DoubleType()),
        NestedField(6, "ok", BooleanType()),
        NestedField(7, "at", TimestamptzType()),
        NestedField(8, "wall", TimestampType()),
        NestedField(9, "dose", DecimalType(9, 3)),
        NestedField(10, "id", UUIDType()),
        NestedField(11, "raw", BinaryType()),
        NestedField(12, "tags", ListType(13, StringType())),
        NestedField(14, "pump", StructType(NestedField(15, "battery", IntegerType()))),
    )
    layout = layout_for("mrt_example", schema, ("site_id", "local_date"))
    assert dict(layout.columns) == {
        "site_id": "text",
        "local_date": "date",
        "n": "integer",
        "readings": "bigint",
        "tir_pct": "double precision",
        "ok": "boolean",
        "at": "timestamptz",
        "wall": "timestamp",
        "dose": "numeric(9,3)",
        "id": "uuid",
        "raw": "bytea",
        "tags": "jsonb",
        "pump": "jsonb",
    }
    assert [(i.name, i.columns, i.unique) for i in layout.indexes] == [
        ("mrt_example_grain_key", ("site_id", "local_date"), True),
        ("mrt_example_local_date_idx", ("local_date",), False),
    ]
    assert layout.docs == (("local_date", "the subject's local day"),)
    assert 'COPY "marts_staging"."mrt_example"' in layout.copy_statement("marts_staging")
    unknown = layout_for(
        "mrt_new", schema, None
    )  # no declared grain: the person and day still indexed
    assert [(i.columns, i.unique) for i in unknown.indexes] == [
        (("site_id", "local_date"), False),
        (("local_date",), False),
    ]
    assert layout.digest != unknown.digest


def test_marts_and_grains_come_from_dbts_manifest(tmp_path: Path) -> None:
    parsed = manifest(project_dir())  # `dbt parse`: no build under tmp_path to reuse
    assert expected_marts(parsed) == sorted(MART_GRAINS)
    assert mart_grains(parsed) == MART_GRAINS
    assert expected_marts(None) == [] and mart_grains(None) == {}


def test_the_last_builds_manifest_is_used_while_the_project_is_unchanged(tmp_path: Path) -> None:
    built = tmp_path / "dbt" / "target" / "manifest.json"
    built.parent.mkdir(parents=True)
    built.write_text(json.dumps({"nodes": {}, "marker": "the last build"}))
    assert manifest(project_dir(), tmp_path / "dbt")["marker"] == "the last build"
    os.utime(built, (0, 0))  # older than the project: parsed afresh
    assert "marker" not in manifest(project_dir(), tmp_path / "dbt")


def test_rows_become_csv_that_postgresql_reads_back() -> None:
    import uuid

    schema = Schema(
        NestedField(1, "s", StringType()),
        NestedField(2, "d", DoubleType()),
        NestedField(3, "id", UUIDType()),
        NestedField(4, "raw", BinaryType()),
        NestedField(5, "tags", ListType(6, StringType())),
    )
    layout = layout_for("t", schema, None)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    batch = pa.RecordBatch.from_pydict(
        {
            "s": pa.array(['say "hi",\nthen go', "", None], pa.large_string()),
            "d": [0.1 + 0.2, None, -0.0],
            "id": pa.array([ident.bytes, None, None], pa.binary(16)),
            "raw": pa.array([b"\x00\xff", None, b""], pa.binary()),
            "tags": pa.array([["a", "b"], None, []], pa.list_(pa.string())),
        }
    )
    text = csv_bytes(batch, layout).decode()
    assert text.startswith('"say ""hi"",\nthen go",')
    assert (
        '0.30000000000000004,"12345678-1234-5678-1234-567812345678","\\x00ff","[""a"",""b""]"'
        in text
    )
    assert '\n"",,,,\n' in text  # an empty string is quoted, NULL is not
    assert text.endswith(',-0,,"\\x","[]"\n')


@pytest.mark.integration
def test_the_command_says_what_to_set_without_a_dsn(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIGHTSCOUT_", "CASCADE_", "ICEBERG_", "MARTS_"))
    }
    env.update(CASCADE_HOME=str(tmp_path / "lake"), COLUMNS="300")
    result = subprocess.run(
        [sys.executable, "-m", "cascade", "publish"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "no PostgreSQL to publish the marts to: set MARTS_DATABASE_URL" in result.stderr
    assert "MARTS_DATABASE_URL=postgresql://marts:PASSWORD@127.0.0.1:55432/marts" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "cascade", "publish", "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert helped.returncode == 0 and "--mart" in helped.stdout and "--force" in helped.stdout
