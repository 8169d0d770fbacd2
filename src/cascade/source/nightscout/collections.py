"""What Cascade knows about each Nightscout collection: where its event time lives and how v1 filters it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TimeFormat = Literal["epoch_ms", "iso"]

# `/api/v1/count/<collection>/where` runs `lib/server/aggregate.js`, which builds its query with
# query.js's *default* options: the time field it insists on is `date`, even for treatments.
# A condition on `_id` lifts that rule (query.js `create`), and `$ne` the zero ObjectId holds
# for every document; the `created_at` bound is then the same one v1 paging uses.
_ZERO_OBJECT_ID = "0" * 24
_COUNT_BY_CREATED_AT = (
    ("find[created_at][$gte]", "1970-01-01T00:00:00.000Z"),
    ("find[_id][$ne]", _ZERO_OBJECT_ID),
)


@dataclass(frozen=True)
class Collection:
    name: str
    time_field: str  # the field v1 `find[...]` filters and sorts on
    time_format: TimeFormat
    paged: bool = True  # False: v1 cannot page it by time (profile); read whole
    count_params: tuple[tuple[str, str], ...] | None = None  # v1 count query for every document


ENTRIES = Collection("entries", "date", "epoch_ms", count_params=(("find[date][$gte]", "0"),))
TREATMENTS = Collection("treatments", "created_at", "iso", count_params=_COUNT_BY_CREATED_AT)
DEVICESTATUS = Collection("devicestatus", "created_at", "iso", count_params=_COUNT_BY_CREATED_AT)
PROFILE = Collection("profile", "startDate", "iso", paged=False)

COLLECTIONS: dict[str, Collection] = {
    c.name: c for c in (ENTRIES, TREATMENTS, DEVICESTATUS, PROFILE)
}


def get_collection(name: str) -> Collection:
    try:
        return COLLECTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown collection {name!r}; choose from {', '.join(COLLECTIONS)}"
        ) from None
