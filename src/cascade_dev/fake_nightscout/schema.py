"""The collections a Nightscout 15 site holds and the fields that matter to its server.

Which collections exist, which fields the server owns, which field each collection's
event-time index is keyed on, and the fields API v3 falls back on (for `srvModified`) and
deduplicates by. Every other module of the store and the server reads these tables.
"""

from __future__ import annotations

from typing import Final, Literal

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "food", "settings")
"""Every collection a Nightscout 15 instance serves through API v3."""

Api = Literal["v1", "v3"]
APIS: Final = ("v1", "v3")

MIN_TIMESTAMP: Final = 946_684_800_000
"""2000-01-01 in ms: `lib/api3/const.json` MIN_TIMESTAMP; v3 refuses earlier times."""

SERVER_FIELDS: Final = frozenset({"_id", "identifier", "srvCreated", "srvModified", "isValid"})
"""Fields the server owns; `edit` refuses to change them."""

INDEX_FIELDS: Final = {
    "entries": ("date", False),
    "treatments": ("created_at", True),
    "devicestatus": ("created_at", True),
    "food": ("created_at", True),
    "settings": ("created_at", True),
    "profile": ("startDate", True),
}
"""Per collection, the field the event-time index is keyed on, and whether that field is
compared as a time (ISO strings) rather than as a plain number (entries' epoch-ms `date`)."""

V3_FALLBACK_DATE_FIELDS: Final = {
    "entries": "date",
    "treatments": "created_at",
    "devicestatus": "created_at",
    "profile": "created_at",
    "food": "created_at",
}
"""`lib/api3/generic/setup.js`: the field v3 derives a missing `srvModified` from (resolveDates)
and that `lastModified` also looks at; settings has none."""

V3_DEDUP_FIELDS: Final = {
    "entries": ("date", "type"),
    "treatments": ("created_at", "eventType"),
    "devicestatus": ("created_at", "device"),
    "profile": ("created_at",),
    "food": ("created_at",),
    "settings": (),
}
"""`lib/api3/generic/setup.js` dedupFallbackFields: a v3 create whose values all equal those of
a stored document *without* an `identifier` (a v1 upload) replaces that document."""
