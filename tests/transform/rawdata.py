"""Build raw lake tables directly (no Nightscout server): scripted documents -> raw Iceberg rows.

Documents look like Nightscout v3 records (identifier, srvCreated/srvModified, isValid), go
through the real parser (`ParsedBatch`) and the real idempotent `upsert`, so the transform sees
exactly what an ingest would have written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pyiceberg.catalog import Catalog

from cascade.lake.records import ParsedBatch, to_arrow
from cascade.lake.tables import ensure_raw_table, upsert

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_local(epoch_ms: int, offset_minutes: int) -> str:
    """ISO 8601 with the local offset, as uploaders send `dateString`."""
    zone = timezone(timedelta(minutes=offset_minutes))
    return datetime.fromtimestamp(epoch_ms / 1000, zone).isoformat(timespec="milliseconds")


@dataclass
class DocFactory:
    """Hands out unique ids; every document gets server times so it looks like a v3 record."""

    prefix: int = 0
    counter: int = 0
    server_ms: int = field(default_factory=lambda: ms(datetime(2026, 1, 1, tzinfo=UTC)))

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.prefix:08x}{self.counter:016x}"

    def _server(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc.setdefault("identifier", self.next_id())
        doc.setdefault("srvCreated", self.server_ms)
        doc.setdefault("srvModified", doc["srvCreated"])
        return doc

    def sgv(
        self,
        at_ms: int,
        value: int,
        *,
        offset: int | None = 60,
        device: str = "xDrip-DexcomG6",
        **extra: Any,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "sgv",
            "sgv": value,
            "date": at_ms,
            "dateString": iso_local(at_ms, offset or 0),
            "device": device,
            "direction": "Flat",
        }
        if offset is not None:
            doc["utcOffset"] = offset
        else:
            doc["dateString"] = datetime.fromtimestamp(at_ms / 1000, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
        doc.update(extra)
        return self._server(doc)

    def treatment(
        self, at_ms: int, event_type: str, *, offset: int = 60, **fields: Any
    ) -> dict[str, Any]:
        doc = {
            "eventType": event_type,
            "created_at": iso_local(at_ms, offset),
            "date": at_ms,
            "utcOffset": offset,
            "enteredBy": "loop://iPhone",
            **fields,
        }
        return self._server(doc)

    def device_status(
        self, at_ms: int, *, offset: int = 60, iob: float, cob: float
    ) -> dict[str, Any]:
        doc = {
            "created_at": iso_local(at_ms, offset),
            "date": at_ms,
            "utcOffset": offset,
            "device": "loop://iPhone",
            "loop": {
                "iob": {"iob": iob},
                "cob": {"cob": cob},
                "predicted": {"values": [120, 118, 115]},
            },
            "pump": {"reservoir": 120.5, "battery": {"percent": 80}},
            "uploader": {"battery": 55},
        }
        return self._server(doc)

    def profile(self, at_ms: int, timezone: str) -> dict[str, Any]:
        doc = {
            "startDate": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(),
            "defaultProfile": "Default",
            "units": "mg/dl",
            "store": {"Default": {"timezone": timezone, "dia": 5, "units": "mg/dl"}},
        }
        return self._server(doc)

    def tombstone(self, doc: dict[str, Any], *, modified_ms: int) -> dict[str, Any]:
        """The record as the v3 history feed reports it after a deletion at the source."""
        return dict(doc, isValid=False, srvModified=modified_ms)


def write_raw(
    catalog: Catalog,
    collection: str,
    site_id: str,
    docs: Sequence[dict[str, Any]] | Iterable[dict[str, Any]],
    *,
    ingested_at: datetime,
    load_id: str = "test-load",
) -> int:
    """Parse and upsert documents into `raw.<collection>`, as one ingest load; return rows written."""
    docs = list(docs)
    now = ms(ingested_at)
    batch = ParsedBatch(collection, site_id)
    batch.add(docs, now_ms=now)
    assert not batch.rejects, batch.rejects[:3]
    rows = to_arrow(collection, batch.rows, ingested_at_us=now * 1000, load_id=load_id, api="v3")
    table = ensure_raw_table(catalog, collection)
    result = upsert(table, site_id, rows)
    return result.inserted + result.replaced
