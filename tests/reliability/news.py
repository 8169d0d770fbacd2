"""What happens on a Nightscout site between two ingests: new readings, a poison one, an edit, a deletion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cascade_dev.fake_nightscout.server import FakeNightscout


def _recent(docs: list[dict[str, Any]], when: str, now: datetime) -> list[dict[str, Any]]:
    """Documents dated within the last three hours (inside v1's look-back), oldest first."""
    found = []
    for doc in docs:
        value = doc.get(when)
        try:
            moment = (
                datetime.fromtimestamp(value / 1000, UTC)
                if isinstance(value, int | float)
                else datetime.fromisoformat(str(value))
            )
        except (TypeError, ValueError, OverflowError):
            continue
        if moment.tzinfo is not None and now - timedelta(hours=3) < moment < now:
            found.append(doc)
    return found


def add_news(ns: FakeNightscout, site: str, round_: int, *, edits_through: str) -> int:
    """Upload, edit and delete on `site` as its users would; return how many documents changed.

    `edits_through` is "v3" (a new srvModified, seen by v3 history) or "v1" (the careportal's
    PUT: the document changes and nothing else, seen by v1's look-back).
    """
    store = ns.stores[site]
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    fresh = [
        {
            "type": "sgv",
            "sgv": 100 + 10 * round_ + i,
            "date": now_ms - 60_000 * (i + 1) - round_ * 7,
            "device": f"late-uploader-{round_}",
        }
        for i in range(3)
    ]
    poison = {"type": "sgv", "sgv": "NaN", "date": now_ms - 30_000 - round_, "device": "broken"}
    store.insert("entries", [*fresh, poison])
    store.insert(
        "treatments",
        [
            {
                "eventType": "Correction Bolus",
                "insulin": 1.5 + round_,
                "created_at": (now - timedelta(minutes=5 + round_)).isoformat(),
                "enteredBy": "careportal",
            }
        ],
    )
    treatments = _recent(store.documents("treatments"), "created_at", now)
    entries = _recent(store.documents("entries"), "date", now)
    edited = treatments[round_ % len(treatments)]
    store.edit(
        "treatments", edited["_id"], {"notes": f"edited in round {round_}"}, api=edits_through
    )  # type: ignore[arg-type]
    deleted = entries[round_ % len(entries)]
    store.delete("entries", deleted["_id"])
    return len(fresh) + 1 + 1 + 1 + 1
