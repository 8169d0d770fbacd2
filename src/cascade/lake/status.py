"""What the lake holds: every table's row count, snapshots, last commit and cursors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyiceberg.catalog import Catalog

from cascade.lake.tables import cursors


@dataclass
class TableStatus:
    table: str
    rows: int
    snapshots: int
    last_commit_at: str | None
    cursors: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lake_status(catalog: Catalog) -> list[TableStatus]:
    statuses = []
    for namespace in sorted(catalog.list_namespaces()):
        for identifier in sorted(catalog.list_tables(namespace)):
            table = catalog.load_table(identifier)
            snapshot = table.current_snapshot()
            rows = (
                int(snapshot.summary.get("total-records", 0))
                if snapshot and snapshot.summary
                else 0
            )
            last = (
                datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC).isoformat(
                    timespec="seconds"
                )
                if snapshot
                else None
            )
            statuses.append(
                TableStatus(
                    table=".".join(identifier),
                    rows=rows,
                    snapshots=len(table.snapshots()),
                    last_commit_at=last,
                    cursors=cursors(table),
                )
            )
    return statuses
