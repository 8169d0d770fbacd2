"""`cascade publish` against the local stack's PostgreSQL, from an embedded lake built by the pipeline.

Every value is compared with the lake's marts read independently through DuckDB. Each test
publishes into its own schema, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from psycopg import errors as pg_errors
from pydantic import SecretStr
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from cascade.config import Settings
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.duck import attach_catalog, connect
from cascade.publish import PublishError, PublishResult, publish

from .conftest import MART_GRAINS, Lake


class _LogEvent(logging.Handler):
    """An event set when `logger` logs a message containing `text` (while used as a context)."""

    def __init__(self, logger: str, text: str) -> None:
        super().__init__(logging.INFO)
        self._logger, self._text = logging.getLogger(logger), text
        self._event = threading.Event()
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        if self._text in record.getMessage():
            self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def __enter__(self) -> _LogEvent:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


pytestmark = [pytest.mark.integration, pytest.mark.stack]

MARTS = sorted(MART_GRAINS)


def configure_settings(settings: Settings, dsn: str, schema: str, **overrides: object) -> Settings:
    return settings.with_values(
        **{"marts_database_url": SecretStr(dsn), "marts_schema": schema, **overrides}
    )


def configure(lake: Lake, dsn: str, schema: str, **overrides: object) -> Settings:
    return configure_settings(lake.settings, dsn, schema, **overrides)


def pg(dsn: str, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def duck(lake: Lake, sql: str) -> list[dict[str, Any]]:
    con = connect()
    try:
        attach_catalog(con, load_lake_catalog(lake.settings))
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def lake_snapshots(lake: Lake) -> dict[str, int]:
    catalog = load_lake_catalog(lake.settings)
    return {
        name: catalog.load_table(("marts", name)).current_snapshot().snapshot_id for name in MARTS
    }


def _normal(row: dict[str, Any]) -> dict[str, Any]:
    return {k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def assert_same_as_lake(lake: Lake, dsn: str, schema: str, mart: str) -> int:
    order = ", ".join(MART_GRAINS[mart])
    expected = [_normal(r) for r in duck(lake, f"select * from marts.{mart} order by {order}")]
    actual = [_normal(r) for r in pg(dsn, f"select * from {schema}.{mart} order by {order}")]
    assert len(actual) == len(expected) > 0
    assert actual == expected  # every column, exactly: doubles travel in shortest round-trip form
    return len(actual)


def published(dsn: str, schema: str) -> dict[str, dict[str, Any]]:
    return {r["mart"]: r for r in pg(dsn, f"select * from {schema}._published order by mart")}


def oids(dsn: str, schema: str) -> dict[str, int]:
    rows = pg(
        dsn,
        "select relname, oid::bigint as oid from pg_class where relnamespace = to_regnamespace(%s) and relkind = 'r'",
        [schema],
    )
    return {r["relname"]: r["oid"] for r in rows}


def test_publish_copies_every_mart_typed_indexed_with_provenance(
    lake: Lake, marts_dsn: str
) -> None:
    result = publish(configure(lake, marts_dsn, "m_copy"))

    assert isinstance(result, PublishResult)
    assert [m.mart for m in result.published] == MARTS and not result.skipped
    assert "***" in result.target and "cascade-marts" not in result.target
    snapshots = lake_snapshots(lake)
    for mart in MARTS:
        rows = assert_same_as_lake(lake, marts_dsn, "m_copy", mart)
        assert next(m for m in result.marts if m.mart == mart).rows == rows
    record = published(marts_dsn, "m_copy")
    assert {m: r["snapshot_id"] for m, r in record.items()} == snapshots
    daily = record["mrt_daily_summary"]
    assert daily["source_table"] == "marts.mrt_daily_summary" and daily["profile"] == "local"
    assert (
        daily["nessie_ref"] is None
        and daily["row_count"]
        == duck(lake, "select count(*) as n from marts.mrt_daily_summary")[0]["n"]
    )
    assert daily["metadata_location"].endswith(".metadata.json")
    comment = pg(marts_dsn, "select obj_description('m_copy.mrt_daily_summary'::regclass) as c")[0][
        "c"
    ]
    assert str(snapshots["mrt_daily_summary"]) in comment and "marts.mrt_daily_summary" in comment

    types = {
        r["column_name"]: r["data_type"]
        for r in pg(
            marts_dsn,
            "select column_name, data_type from information_schema.columns where table_schema = 'm_copy' and table_name = 'mrt_glucose_overview'",
        )
    }
    assert types["site_id"] == "text" and types["window_end_date"] == "date"
    assert (
        types["last_reading_at"] == "timestamp with time zone"
        and types["tir_pct"] == "double precision"
    )
    assert types["reading_count"] == "bigint" and types["days_with_readings"] == "integer"
    assert types["is_tir_target_met"] == "boolean"
    assert isinstance(
        pg(marts_dsn, "select window_end_date from m_copy.mrt_glucose_overview limit 1")[0][
            "window_end_date"
        ],
        date,
    )

    indexes = {
        r["indexname"]: r["indexdef"]
        for r in pg(
            marts_dsn, "select indexname, indexdef from pg_indexes where schemaname = 'm_copy'"
        )
    }
    assert (
        "CREATE UNIQUE INDEX" in indexes["mrt_daily_summary_grain_key"]
        and "(site_id, local_date)" in indexes["mrt_daily_summary_grain_key"]
    )
    assert "(local_date)" in indexes["mrt_daily_summary_local_date_idx"]
    assert (
        "(site_id, iso_day_of_week, local_hour)" in indexes["mrt_glucose_hourly_patterns_grain_key"]
    )
    assert "(site_id, time_bin)" in indexes["mrt_agp_grain_key"]
    assert "(site_id)" in indexes["mrt_glucose_overview_grain_key"]
    analyzed = pg(
        marts_dsn,
        "select relname from pg_stat_user_tables where schemaname = 'm_copy' and last_analyze is not null",
    )
    assert {r["relname"] for r in analyzed} >= set(MARTS)
    # the dashboards' typical query uses the grain index
    with psycopg.connect(marts_dsn, autocommit=True) as conn:
        conn.execute("set enable_seqscan = off")
        plan = conn.execute(
            "explain select * from m_copy.mrt_daily_summary where site_id = 'subject-01'"
        ).fetchall()
    assert "mrt_daily_summary_grain_key" in str(plan)
    assert (
        pg(marts_dsn, "select count(*) as n from pg_tables where schemaname = 'm_copy_staging'")[0][
            "n"
        ]
        == 0
    )


def test_publishing_the_same_snapshot_again_changes_nothing(lake: Lake, marts_dsn: str) -> None:
    settings = configure(lake, marts_dsn, "m_again")
    publish(settings)
    before_records, before_oids = published(marts_dsn, "m_again"), oids(marts_dsn, "m_again")
    before_xmin = pg(
        marts_dsn, "select mart, xmin::text as x from m_again._published order by mart"
    )

    again = publish(settings)

    assert not again.published and [m.reason for m in again.skipped] == ["already published"] * len(
        MARTS
    )
    assert again.published_at is None and again.lock_attempts == 0
    assert "nothing to publish" in again.summary()
    assert published(marts_dsn, "m_again") == before_records
    assert oids(marts_dsn, "m_again") == before_oids  # no table was swapped
    assert (
        pg(marts_dsn, "select mart, xmin::text as x from m_again._published order by mart")
        == before_xmin
    )

    forced = publish(settings, marts=["mrt_glucose_overview"], force=True)
    assert [m.mart for m in forced.published] == ["mrt_glucose_overview"]
    assert oids(marts_dsn, "m_again")["mrt_glucose_overview"] != before_oids["mrt_glucose_overview"]


# The day's mean always moves when readings are lowered (its minimum may already be lower); as
# whole 1/10000 mg/dL (the mart's rounding) the sums are exact integers in both engines.
TOTALS = (
    "select count(*) as n, sum(reading_count) as readings, sum(min_glucose_mg_dl) as mins, "
    "sum((mean_glucose_mg_dl * 10000)::bigint) as means from {}.mrt_daily_summary"
)


@dataclass(frozen=True)
class MovedOn:
    """Schemas published from the lake as it was, then the lake moved on (one more transform)."""

    before: dict[str, int]  # the marts' snapshots that were published
    after: dict[str, int]
    first: dict[str, dict[str, dict[str, Any]]]  # schema -> its _published rows
    old_totals: dict[str, Any]


@pytest.fixture(scope="module")
def moved_on(lake: Lake, marts_dsn: str) -> MovedOn:
    first = {}
    for schema in ("m_update", "m_reader"):
        publish(configure(lake, marts_dsn, schema))
        first[schema] = published(marts_dsn, schema)
    old_totals = pg(marts_dsn, TOTALS.format("m_reader"))[0]
    before = lake_snapshots(lake)
    lake.advance()
    return MovedOn(before, lake_snapshots(lake), first, old_totals)


def test_a_new_transform_is_published_with_its_new_snapshot(
    lake: Lake, marts_dsn: str, moved_on: MovedOn
) -> None:
    changed = sorted(m for m in MARTS if moved_on.after[m] != moved_on.before[m])
    assert "mrt_daily_summary" in changed  # the edited readings change that subject's day

    result = publish(configure(lake, marts_dsn, "m_update"))

    assert sorted(m.mart for m in result.published) == changed
    assert {m.reason for m in result.published} == {"new snapshot"}
    assert all(m.previous_snapshot_id == moved_on.before[m.mart] for m in result.published)
    record = published(marts_dsn, "m_update")
    assert {m: r["snapshot_id"] for m, r in record.items()} == moved_on.after
    first = moved_on.first["m_update"]
    for mart in MARTS:
        assert_same_as_lake(lake, marts_dsn, "m_update", mart)
        if mart in changed:
            assert record[mart]["published_at"] > first[mart]["published_at"]
        else:
            assert record[mart] == first[mart]


def test_a_long_reader_sees_the_whole_old_mart_and_the_publish_waits_for_it(
    lake: Lake, marts_dsn: str, bi_dsn: str, moved_on: MovedOn
) -> None:
    schema = "m_reader"
    settings = configure(
        lake, marts_dsn, schema, publish_lock_timeout_seconds=0.2, publish_lock_wait_seconds=60
    )
    totals = TOTALS.format(schema)
    old = moved_on.old_totals
    assert pg(marts_dsn, totals)[0] == old  # still the old mart
    new = duck(lake, TOTALS.format("marts"))[0]
    assert new != old  # the source moved on: a new mean that day

    seen: dict[str, Any] = {}
    holding = threading.Event()

    def reader() -> None:
        with psycopg.connect(bi_dsn) as conn:  # a BI user, in a transaction (autocommit off)
            cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
            cursor.execute(f"select 1 from {schema}.mrt_daily_summary limit 1")
            holding.set()
            # a long query over the old mart: ~0.1 s per row, reading while the publish runs
            cursor.execute(
                "select count(*) as n, sum(reading_count) as readings, sum(min_glucose_mg_dl) as mins, "
                "sum((mean_glucose_mg_dl * 10000)::bigint) as means "
                f"from (select *, pg_sleep(0.1) from {schema}.mrt_daily_summary) as slow"
            )
            seen["long"] = cursor.fetchone()
            cursor.execute(totals)
            seen["again"] = cursor.fetchone()
            seen["ended"] = time.monotonic()
            conn.commit()

    thread = threading.Thread(target=reader)
    thread.start()
    assert holding.wait(10)
    # while the publish waits, other readers are held up at most one lock_timeout per try
    waiter_times: list[float] = []
    retrying = _LogEvent("cascade.publish.publisher", "old marts locked")

    def other_reader() -> None:
        assert retrying.wait(30)  # the publish's first lock try has timed out: it is waiting
        started = time.monotonic()
        pg(bi_dsn, f"select count(*) from {schema}.mrt_time_in_range")
        waiter_times.append(time.monotonic() - started)

    other = threading.Thread(target=other_reader)
    other.start()
    started = time.monotonic()
    with retrying:
        result = publish(settings)
    finished = time.monotonic()
    thread.join(30)
    other.join(30)

    assert seen["long"] == old and seen["again"] == old  # the whole old mart, twice, consistently
    assert finished > seen["ended"] > started  # the swap happened only once the reader had finished
    assert result.lock_attempts > 1
    assert "mrt_daily_summary" in {m.mart for m in result.published}
    assert waiter_times and waiter_times[0] < 2.5
    assert pg(marts_dsn, totals)[0] == new
    assert (
        published(marts_dsn, schema)["mrt_daily_summary"]["snapshot_id"]
        == moved_on.after["mrt_daily_summary"]
    )


def test_a_reader_that_never_lets_go_makes_the_publish_fail_clearly(
    lake: Lake, marts_dsn: str, bi_dsn: str
) -> None:
    schema = "m_stuck"
    settings = configure(
        lake, marts_dsn, schema, publish_lock_timeout_seconds=0.2, publish_lock_wait_seconds=1.0
    )
    publish(settings)
    before_oids, before_records = oids(marts_dsn, schema), published(marts_dsn, schema)
    with psycopg.connect(bi_dsn) as reader:
        reader.execute(f"select 1 from {schema}.mrt_agp limit 1")
        pid = reader.info.backend_pid
        started = time.monotonic()
        with pytest.raises(PublishError) as failure:
            publish(settings, force=True)
        elapsed = time.monotonic() - started
        message = str(failure.value)
        assert "readers kept the old tables locked" in message and f"pid {pid}" in message
        assert (
            "bi_reader" in message
            and "PUBLISH_LOCK_WAIT_SECONDS" in message
            and "unchanged" in message
        )
        assert "cascade-marts" not in message
        assert elapsed < 10
        assert (
            oids(marts_dsn, schema) == before_oids
            and published(marts_dsn, schema) == before_records
        )
        assert (
            pg(
                marts_dsn,
                "select count(*) as n from pg_tables where schemaname = %s",
                [f"{schema}_staging"],
            )[0]["n"]
            == 0
        )
        reader.rollback()
    assert len(publish(settings, force=True).published) == len(MARTS)


def test_a_snapshot_taken_before_the_swap_sees_a_whole_new_mart_never_an_empty_one(
    lake: Lake, marts_dsn: str, bi_dsn: str
) -> None:
    """A REPEATABLE READ transaction that began before a swap and reads the mart only after it: the
    new table's rows were loaded frozen (COPY FREEZE), so it sees the whole new mart, not nothing."""
    schema = "m_snapshot"
    settings = configure(lake, marts_dsn, schema)
    publish(settings)
    expected = pg(marts_dsn, f"select count(*) as n from {schema}.mrt_time_in_range")[0]["n"]
    with psycopg.connect(bi_dsn) as reader:
        reader.execute("set transaction isolation level repeatable read")
        reader.execute(f"select count(*) from {schema}._published")  # the snapshot is taken here
        assert publish(settings, marts=["mrt_time_in_range"], force=True).lock_attempts == 1
        assert (
            reader.execute(f"select count(*) from {schema}.mrt_time_in_range").fetchone()[0]
            == expected
        )
        reader.rollback()


def test_the_bi_role_reads_the_marts_and_cannot_change_anything(
    lake: Lake, marts_dsn: str, bi_dsn: str
) -> None:
    publish(configure(lake, marts_dsn, "m_bi"))
    with psycopg.connect(bi_dsn, autocommit=True) as conn:
        for mart in [*MARTS, "_published"]:
            assert conn.execute(f"select count(*) from m_bi.{mart}").fetchone()[0] > 0
        for statement, error in (
            (
                "insert into m_bi.mrt_glucose_overview (site_id) values ('intruder')",
                pg_errors.InsufficientPrivilege,
            ),
            ("update m_bi._published set row_count = 0", pg_errors.InsufficientPrivilege),
            ("delete from m_bi.mrt_daily_summary", pg_errors.InsufficientPrivilege),
            ("create table m_bi.mine (x int)", pg_errors.InsufficientPrivilege),
            ("drop table m_bi.mrt_agp", pg_errors.InsufficientPrivilege),
            ("select count(*) from m_bi_staging.mrt_agp", pg_errors.InsufficientPrivilege),
        ):
            with pytest.raises(error):
                conn.execute(statement)
    privileges = pg(
        marts_dsn,
        "select has_schema_privilege('bi_reader', 'm_bi', 'CREATE') as c, has_schema_privilege('bi_reader', 'm_bi_staging', 'USAGE') as s",
    )[0]
    assert privileges == {"c": False, "s": False}


def test_a_wrong_password_is_never_shown(lake: Lake, postgres: Any) -> None:
    dsn = postgres.stack.postgres_dsn("marts", "marts", SecretStr("not-the-password-42"))
    with pytest.raises(PublishError) as failure:
        publish(configure(lake, dsn, "m_denied"))
    message = str(failure.value)
    assert "not-the-password-42" not in message and "marts:***@" in message
    assert "password authentication failed" in message


def test_cascade_publish_command(lake: Lake, marts_dsn: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIGHTSCOUT_", "CASCADE_", "ICEBERG_", "MARTS_"))
    }
    env.update(
        CASCADE_HOME=str(lake.settings.lake.home),
        MARTS_DATABASE_URL=marts_dsn,
        MARTS_SCHEMA="m_cli",
        COLUMNS="200",
    )
    result = subprocess.run(
        [sys.executable, "-m", "cascade", "publish"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=lake.settings.lake.home,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "publish ok: 5 marts published to m_cli" in result.stdout
        and "published (new)" in result.stdout
    )
    assert "marts:***@" in result.stdout and "cascade-marts" not in result.stdout + result.stderr
    assert len(pg(marts_dsn, "select * from m_cli._published")) == len(MARTS)


def test_every_iceberg_type_round_trips(settings: Settings, marts_dsn: str) -> None:
    """A mart with every Iceberg type, edge values included, read back from PostgreSQL as written."""
    catalog = load_lake_catalog(settings)
    catalog.create_namespace_if_not_exists("marts")
    table = catalog.create_table(
        ("marts", "mrt_types"),
        schema=Schema(
            NestedField(1, "site_id", StringType()),
            NestedField(2, "local_date", DateType()),
            NestedField(3, "n", IntegerType()),
            NestedField(4, "big", LongType()),
            NestedField(5, "d", DoubleType()),
            NestedField(6, "f", FloatType()),
            NestedField(7, "ok", BooleanType()),
            NestedField(8, "at", TimestamptzType()),
            NestedField(9, "wall", TimestampType()),
            NestedField(10, "dose", DecimalType(9, 3)),
            NestedField(11, "id", UUIDType()),
            NestedField(12, "raw", BinaryType()),
            NestedField(13, "tags", ListType(14, StringType())),
            NestedField(15, "pump", StructType(NestedField(16, "battery", IntegerType()))),
            NestedField(17, "t", TimeType()),
        ),
    )
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    rows: list[dict[str, Any]] = [
        {
            "site_id": 'say "hi",\nthen go',
            "local_date": date(2024, 2, 29),
            "n": -7,
            "big": 2**62,
            "d": 0.1 + 0.2,
            "f": 1.5,
            "ok": True,
            "at": datetime(2024, 3, 1, 12, 30, 1, 123456, tzinfo=UTC),
            "wall": datetime(2024, 3, 1, 7, 0),
            "dose": Decimal("1.250"),
            "id": ident.bytes,
            "raw": b"\x00\xff",
            "tags": ["a", "b"],
            "pump": {"battery": 80},
            "t": dt_time(23, 59, 59, 999999),
        },
        {
            "site_id": "",
            "local_date": None,
            "n": 1,
            "big": None,
            "d": math.inf,
            "f": None,
            "ok": None,
            "at": None,
            "wall": None,
            "dose": None,
            "id": None,
            "raw": b"",
            "tags": [],
            "pump": None,
            "t": None,
        },
        {
            "site_id": None,
            "local_date": date(2024, 1, 1),
            "n": 2,
            "big": -1,
            "d": -0.0,
            "f": None,
            "ok": False,
            "at": None,
            "wall": None,
            "dose": Decimal("-0.001"),
            "id": None,
            "raw": None,
            "tags": None,
            "pump": {"battery": None},
            "t": None,
        },
        {
            "site_id": "nan",
            "local_date": None,
            "n": 3,
            "big": None,
            "d": math.nan,
            "f": None,
            "ok": None,
            "at": None,
            "wall": None,
            "dose": None,
            "id": None,
            "raw": None,
            "tags": None,
            "pump": None,
            "t": None,
        },
    ]
    table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))

    publish(configure_settings(settings, marts_dsn, "m_types"), marts=["mrt_types"])

    back = pg(marts_dsn, "select * from m_types.mrt_types order by n")
    expected = [dict(r, id=ident if r["id"] else None) for r in rows]
    assert math.isnan(back[3].pop("d")) and math.isnan(expected[3].pop("d"))
    assert back == expected
    assert math.copysign(1.0, back[2]["d"]) == -1.0  # -0.0 kept its sign
    types = {
        r["column_name"]: r["udt_name"]
        for r in pg(
            marts_dsn,
            "select column_name, udt_name from information_schema.columns where table_schema = 'm_types' and table_name = 'mrt_types'",
        )
    }
    assert types == {
        "site_id": "text",
        "local_date": "date",
        "n": "int4",
        "big": "int8",
        "d": "float8",
        "f": "float4",
        "ok": "bool",
        "at": "timestamptz",
        "wall": "timestamp",
        "dose": "numeric",
        "id": "uuid",
        "raw": "bytea",
        "tags": "jsonb",
        "pump": "jsonb",
        "t": "time",
    }
