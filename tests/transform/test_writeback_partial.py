"""Partial write-back: tables keyed by (site_id, date) replace only the changed groups, in one commit."""

from __future__ import annotations

import duckdb
import pytest
from pyiceberg.catalog import Catalog

from cascade.transform.writeback import FINGERPRINT_PROPERTY, fingerprint, write_table


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA gold")
    con.execute(
        "CREATE TABLE gold.daily AS SELECT site AS site_id, "
        "CAST(DATE '2026-01-01' + CAST(d AS INTEGER) AS DATE) AS local_date, "
        "CAST(d * 10 + length(site) AS BIGINT) AS reading_count "
        "FROM (VALUES ('a'), ('b'), ('c')) AS s(site), range(60) AS r(d)"
    )
    return con


def lake_rows(catalog: Catalog) -> list[tuple[object, ...]]:
    rows = catalog.load_table("gold.daily").scan().to_arrow().to_pylist()
    return sorted((r["site_id"], r["local_date"], r["reading_count"]) for r in rows)


def local_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return sorted(con.execute("SELECT * FROM gold.daily").fetchall())


def write(catalog: Catalog, con: duckdb.DuckDBPyConnection):  # type: ignore[no-untyped-def]
    return write_table(catalog, con, namespace="gold", name="daily", node_id="n")


def test_only_changed_groups_are_replaced(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> None:
    first = write(catalog, con)
    assert first.committed and not first.partial and first.rows == 180
    table = catalog.load_table("gold.daily")
    assert [f.name for f in table.spec().fields] == ["local_date_month"]

    again = write(catalog, con)
    assert not again.committed

    # a new day for two subjects, an edited day, a deleted day
    con.execute(
        "INSERT INTO gold.daily VALUES ('a', DATE '2026-03-02', 1), ('b', DATE '2026-03-02', 2)"
    )
    con.execute(
        "UPDATE gold.daily SET reading_count = -5 WHERE site_id = 'c' AND local_date = DATE '2026-02-27'"
    )
    con.execute("DELETE FROM gold.daily WHERE site_id = 'a' AND local_date = DATE '2026-02-28'")
    changed = write(catalog, con)
    assert changed.committed and changed.partial
    # sites {a, b, c} x dates {02-27, 02-28, 03-02}: at most 9 groups' rows rewritten
    assert changed.replaced_rows <= 9
    assert lake_rows(catalog) == local_rows(con)
    table = catalog.load_table("gold.daily")
    assert table.properties[FINGERPRINT_PROPERTY] == fingerprint(con, "gold.daily")[0]
    assert not write(catalog, con).committed  # converged: nothing more to commit


def test_a_lake_changed_behind_the_cache_is_overwritten_whole(
    con: duckdb.DuckDBPyConnection, catalog: Catalog
) -> None:
    write(catalog, con)
    # someone else commits to the table: the cached groups no longer describe it
    table = catalog.load_table("gold.daily")
    with table.transaction() as tx:
        tx.set_properties({FINGERPRINT_PROPERTY: "foreign"})
    con.execute(
        "UPDATE gold.daily SET reading_count = 0 WHERE site_id = 'a' AND local_date = DATE '2026-01-05'"
    )
    rewritten = write(catalog, con)
    assert rewritten.committed and not rewritten.partial and rewritten.replaced_rows == 180
    assert lake_rows(catalog) == local_rows(con)


def test_a_new_working_copy_learns_the_lake_groups_from_an_equal_table(
    con: duckdb.DuckDBPyConnection, catalog: Catalog
) -> None:
    write(catalog, con)
    fresh = duckdb.connect()
    fresh.execute("SET TimeZone = 'UTC'")
    fresh.execute("CREATE SCHEMA gold")
    fresh.register("daily_rows", con.execute("SELECT * FROM gold.daily").to_arrow_table())
    fresh.execute("CREATE TABLE gold.daily AS SELECT * FROM daily_rows ORDER BY site_id DESC")
    assert not write(catalog, fresh).committed  # equal content: no commit, groups cached
    fresh.execute(
        "UPDATE gold.daily SET reading_count = 1 WHERE site_id = 'b' AND local_date > DATE '2026-02-20'"
    )
    changed = write(catalog, fresh)
    assert changed.committed and changed.partial
    assert lake_rows(catalog) == local_rows(fresh)
