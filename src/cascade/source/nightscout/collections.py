"""What Cascade knows about each Nightscout collection: where its event time lives and how v1 filters it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TimeFormat = Literal["epoch_ms", "iso"]


@dataclass(frozen=True)
class Collection:
    name: str
    time_field: str  # the field v1 `find[...]` filters and sorts on
    time_format: TimeFormat
    paged: bool = True  # profile.json returns every profile at once


ENTRIES = Collection("entries", "date", "epoch_ms")
TREATMENTS = Collection("treatments", "created_at", "iso")
DEVICESTATUS = Collection("devicestatus", "created_at", "iso")
PROFILE = Collection("profile", "startDate", "iso", paged=False)

COLLECTIONS: dict[str, Collection] = {c.name: c for c in (ENTRIES, TREATMENTS, DEVICESTATUS, PROFILE)}


def get_collection(name: str) -> Collection:
    try:
        return COLLECTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown collection {name!r}; choose from {', '.join(COLLECTIONS)}"
        ) from None
