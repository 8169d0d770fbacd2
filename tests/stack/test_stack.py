"""Integration tests on the real local stack: services, branches, Trino <-> PyIceberg, restarts.

The tests run in file order; the restart test is last, and checks that everything the earlier
tests wrote is still there after every service was stopped and started again.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any

import pyarrow as pa
import pytest
from pyarrow import fs
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError

from cascade.config import Settings
from cascade_dev.stack import SERVICES, down, logs, status, trino_query, up

# `integration` too, so `make test-unit` (-m "not integration") never starts the stack.
pytestmark = [pytest.mark.stack, pytest.mark.integration, pytest.mark.timeout(1800)]

RUN = uuid.uuid4().hex[:8]
NAMESPACE = f"stacktest_{RUN}"
SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("branch", pa.string())])

# What the tests wrote, checked again after the restart: (branch, table) -> expected row count.
written: dict[tuple[str, str], int] = {}


def catalog(settings: Settings, branch: str) -> Catalog:
    # The Nessie ref goes in the URI (PyIceberg's REST client ignores a separate ref parameter).
    return load_catalog(
        f"nessie-{branch}",
        type="rest",
        uri=settings.on_local_stack(branch).nessie.catalog_uri,
        **settings.on_local_stack().s3.properties(),
    )


def rows(branch: str, ids: range) -> pa.Table:
    return pa.Table.from_pylist([{"id": i, "branch": branch} for i in ids], schema=SCHEMA)


def trino(settings: Settings, sql: str) -> list[list[Any]]:
    return trino_query(settings.stack_trino_uri, sql)


def psql(
    settings: Settings, user: str, password: str, database: str, sql: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "psql",
            "-X",
            "-At",
            "-h",
            settings.stack.host,
            "-p",
            str(settings.stack.postgres_port),
            "-U",
            user,
            "-d",
            database,
            "-c",
            sql,
        ],
        env={**os.environ, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_service_is_healthy_and_up_is_idempotent(stack: Settings) -> None:
    before = {s.name: s for s in status(stack)}
    assert set(before) == set(SERVICES)
    for service in before.values():
        assert service.healthy, service.describe()
        assert service.log_path.exists()
    again = up(stack)
    assert [s.detail for s in again] == ["already running"] * len(SERVICES)
    assert {s.name: s.pid for s in again} == {name: s.pid for name, s in before.items()}
    assert all(s.pid for s in again)
    assert "Listening on" in logs(stack, "nessie", lines=10_000)


def test_the_lake_bucket_has_its_prefixes(stack: Settings) -> None:
    s3 = fs.S3FileSystem(
        access_key=stack.stack.minio_root_user.get_secret_value(),
        secret_key=stack.stack.minio_root_password.get_secret_value(),
        endpoint_override=f"{stack.stack.host}:{stack.stack.minio_port}",
        scheme="http",
        region=stack.s3.region,
    )
    found = {info.base_name for info in s3.get_file_info(fs.FileSelector("lake"))}
    assert {"warehouse", "stage"} <= found


def test_postgres_roles_and_the_read_only_bi_role(stack: Settings) -> None:
    for database, field in (
        ("nessie", "nessie_db_password"),
        ("dagster", "dagster_db_password"),
        ("superset", "superset_db_password"),
        ("marts", "marts_db_password"),
    ):
        password = getattr(stack.stack, field).get_secret_value()
        result = psql(stack, database, password, database, "SELECT current_user")
        assert result.returncode == 0 and result.stdout.strip() == database, result.stderr
    marts = stack.stack.marts_db_password.get_secret_value()
    bi = stack.stack.bi_reader_password.get_secret_value()
    table = f"bi_check_{RUN}"
    assert (
        psql(
            stack,
            "marts",
            marts,
            "marts",
            f"CREATE TABLE {table} (x int); INSERT INTO {table} VALUES (7)",
        ).returncode
        == 0
    )
    assert psql(stack, "bi_reader", bi, "marts", f"SELECT x FROM {table}").stdout.strip() == "7"
    denied = psql(stack, "bi_reader", bi, "marts", f"INSERT INTO {table} VALUES (8)")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    assert psql(stack, "bi_reader", bi, "nessie", "SELECT 1").returncode != 0
    # Trino's postgres catalog reads the marts database.
    assert trino(stack, f"SELECT x FROM postgres.public.{table}") == [[7]]


def test_branches_main_and_dev_are_isolated(stack: Settings) -> None:
    dev, main = catalog(stack, "dev"), catalog(stack, "main")
    dev.create_namespace_if_not_exists(NAMESPACE)
    table = dev.create_table(f"{NAMESPACE}.readings", schema=SCHEMA)
    table.append(rows("dev", range(5)))
    written[("dev", "readings")] = 5

    # Nothing written on dev is visible on main.
    with pytest.raises(NoSuchTableError):
        main.load_table(f"{NAMESPACE}.readings")

    main.create_namespace_if_not_exists(NAMESPACE)
    main_table = main.create_table(f"{NAMESPACE}.readings", schema=SCHEMA)
    main_table.append(rows("main", range(100, 103)))
    written[("main", "readings")] = 3

    dev_table = dev.load_table(f"{NAMESPACE}.readings")
    assert dev_table.scan().to_arrow().num_rows == 5
    assert main.load_table(f"{NAMESPACE}.readings").scan().to_arrow().num_rows == 3
    dev_snapshots = {s.snapshot_id for s in dev_table.snapshots()}
    main_snapshots = {s.snapshot_id for s in main.load_table(f"{NAMESPACE}.readings").snapshots()}
    assert dev_snapshots.isdisjoint(main_snapshots)
    assert set(dev_table.scan().to_arrow().column("branch").to_pylist()) == {"dev"}


def test_trino_reads_what_pyiceberg_wrote(stack: Settings) -> None:
    main = catalog(stack, "main")
    main.create_namespace_if_not_exists(NAMESPACE)
    table = main.create_table(f"{NAMESPACE}.from_pyiceberg", schema=SCHEMA)
    table.append(rows("main", range(42)))
    written[("main", "from_pyiceberg")] = 42
    assert trino(stack, f"SELECT count(*) FROM iceberg.{NAMESPACE}.from_pyiceberg") == [[42]]
    assert trino(stack, f"SELECT count(*), min(branch) FROM iceberg.{NAMESPACE}.readings") == [
        [3, "main"]
    ]
    # the iceberg_dev catalog reads Nessie's dev branch
    assert trino(stack, f"SELECT count(*), min(branch) FROM iceberg_dev.{NAMESPACE}.readings") == [
        [5, "dev"]
    ]


def test_pyiceberg_reads_what_trino_wrote(stack: Settings) -> None:
    trino(stack, f"CREATE SCHEMA IF NOT EXISTS iceberg.{NAMESPACE}")
    trino(stack, f"CREATE TABLE iceberg.{NAMESPACE}.from_trino (id bigint, note varchar)")
    trino(
        stack,
        f"INSERT INTO iceberg.{NAMESPACE}.from_trino VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    )
    trino(
        stack,
        f"INSERT INTO iceberg.{NAMESPACE}.from_trino SELECT id + 3, note FROM iceberg.{NAMESPACE}.from_trino",
    )
    written[("main", "from_trino")] = 6
    table = catalog(stack, "main").load_table(f"{NAMESPACE}.from_trino")
    data = table.scan().to_arrow().sort_by("id")
    assert data.column("id").to_pylist() == [1, 2, 3, 4, 5, 6]
    assert data.column("note").to_pylist()[:3] == ["one", "two", "three"]
    # Nessie's Iceberg REST serves the current snapshot only (history is Nessie's commit log).
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    assert snapshot.summary["engine-name"] == "trino"
    # and it is on main only
    with pytest.raises(NoSuchTableError):
        catalog(stack, "dev").load_table(f"{NAMESPACE}.from_trino")


def test_a_restart_of_every_service_loses_nothing(stack: Settings) -> None:
    assert written, "the earlier tests wrote nothing to check"
    snapshots = {
        key: catalog(stack, key[0])
        .load_table(f"{NAMESPACE}.{key[1]}")
        .current_snapshot()
        .snapshot_id  # type: ignore[union-attr]
        for key in written
    }

    stopped = down(stack)
    assert [s.running for s in stopped] == [False] * len(SERVICES)
    assert not list((stack.stack_home / "run").glob("*.json")), "down left pid files behind"
    assert not any(s.running for s in status(stack))

    restarted = up(stack)
    assert all(s.healthy for s in restarted)
    for (branch, name), count in written.items():
        table = catalog(stack, branch).load_table(f"{NAMESPACE}.{name}")
        assert table.current_snapshot().snapshot_id == snapshots[(branch, name)]  # type: ignore[union-attr]
        assert table.scan().to_arrow().num_rows == count
        trino_catalog = "iceberg" if branch == "main" else "iceberg_dev"
        assert trino(stack, f"SELECT count(*) FROM {trino_catalog}.{NAMESPACE}.{name}") == [[count]]
    # the roles survived too
    result = psql(
        stack,
        "marts",
        stack.stack.marts_db_password.get_secret_value(),
        "marts",
        f"SELECT x FROM bi_check_{RUN}",
    )
    assert result.stdout.strip() == "7"
