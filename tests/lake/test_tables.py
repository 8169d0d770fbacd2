from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.compute as pc
from pyiceberg.catalog import Catalog

from cascade.lake.records import ParsedBatch, to_arrow
from cascade.lake.tables import ensure_raw_table, read_cursor, upsert

NOW_MS = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000


def _rows(docs: list[dict[str, object]], site: str = "s1"):
    batch = ParsedBatch("entries", site)
    batch.add(docs, now_ms=NOW_MS)
    assert not batch.rejects
    return to_arrow("entries", batch.rows, ingested_at_us=NOW_MS * 1000, load_id="L", api="v3")


def _docs(n: int) -> list[dict[str, object]]:
    return [
        {
            "identifier": f"id{i}",
            "sgv": 100 + i,
            "date": NOW_MS - i * 300_000,
            "srvCreated": NOW_MS,
            "srvModified": NOW_MS,
        }
        for i in range(n)
    ]


def test_upsert_is_idempotent_and_commits_cursor_with_data(catalog: Catalog) -> None:
    table = ensure_raw_table(catalog, "entries")
    first = upsert(table, "s1", _rows(_docs(600)), cursor={"api": "v3", "srv_modified": NOW_MS})
    assert first.inserted == 600
    table = catalog.load_table("raw.entries")
    snapshots = len(table.snapshots())
    again = upsert(table, "s1", _rows(_docs(600)), cursor={"api": "v3", "srv_modified": NOW_MS})
    assert (again.inserted, again.unchanged) == (0, 600)
    table = catalog.load_table("raw.entries")
    assert len(table.snapshots()) == snapshots  # nothing to do: no commit at all
    assert table.scan().to_arrow().num_rows == 600
    assert read_cursor(table, "s1") == {"api": "v3", "srv_modified": NOW_MS}
    # the cursor is in the same metadata version as the rows of the snapshot it was set with
    assert table.current_snapshot().summary["total-records"] == "600"


def test_edit_replaces_even_when_it_moves_day_and_stale_versions_lose(catalog: Catalog) -> None:
    table = ensure_raw_table(catalog, "entries")
    upsert(table, "s1", _rows(_docs(10)))
    edited = dict(_docs(1)[0], sgv=55, date=NOW_MS - 9 * DAY_MS, srvModified=NOW_MS + 10)
    table = catalog.load_table("raw.entries")
    result = upsert(table, "s1", _rows([edited]))
    assert result.replaced == 1
    table = catalog.load_table("raw.entries")
    rows = table.scan().to_arrow()
    assert rows.num_rows == 10
    mine = rows.filter(pc.equal(rows["source_id"], "id0")).to_pylist()
    assert [r["sgv_mg_dl"] for r in mine] == [55]


def test_an_older_version_arriving_late_does_not_win(catalog: Catalog) -> None:
    table = ensure_raw_table(catalog, "entries")
    upsert(table, "s1", _rows(_docs(3)))
    newer = dict(_docs(1)[0], sgv=250, srvModified=NOW_MS + 10)
    upsert(catalog.load_table("raw.entries"), "s1", _rows([newer]))
    stale = upsert(catalog.load_table("raw.entries"), "s1", _rows(_docs(1)))  # e.g. a stage replay
    assert stale.stale == 1
    rows = catalog.load_table("raw.entries").scan().to_arrow()
    assert sorted(rows["sgv_mg_dl"].to_pylist()) == [101, 102, 250]


def test_sites_are_independent(catalog: Catalog) -> None:
    table = ensure_raw_table(catalog, "entries")
    upsert(table, "s1", _rows(_docs(5), "s1"), cursor={"api": "v3", "srv_modified": 1})
    table = catalog.load_table("raw.entries")
    upsert(table, "s2", _rows(_docs(5), "s2"), cursor={"api": "v3", "srv_modified": 2})
    table = catalog.load_table("raw.entries")
    assert table.scan().to_arrow().num_rows == 10
    assert read_cursor(table, "s1") == {"api": "v3", "srv_modified": 1}
    assert read_cursor(table, "s2") == {"api": "v3", "srv_modified": 2}


def test_new_cascade_columns_evolve_existing_table(catalog: Catalog) -> None:
    table = ensure_raw_table(catalog, "entries")
    with table.update_schema() as update:
        update.delete_column("noise")
    assert "noise" not in catalog.load_table("raw.entries").schema().column_names
    evolved = ensure_raw_table(catalog, "entries")
    assert "noise" in evolved.schema().column_names
