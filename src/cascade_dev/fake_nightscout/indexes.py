"""The per-collection indexes of a site: by id, by event time, by stored `srvModified`.

Range queries bisect these sorted lists instead of scanning a subject-year per request:
the event-time index is what v1 sorts and pages by, the `srvModified` index what the v3
history feed pages by (a document without a stored `srvModified` is not in it, as it does
not match `srvModified > x` in MongoDB). Entries are also indexed by `sysTime`, v1's
upsert key.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from cascade_dev.fake_nightscout.records import StoredDoc


@dataclass
class _Collection:
    """Documents of one collection and the two sorted indexes over them."""

    name: str
    by_identifier: dict[str, StoredDoc] = field(default_factory=dict)
    by_oid: dict[str, StoredDoc] = field(default_factory=dict)
    # Event-time index: parallel lists sorted by (event_ms, seq).
    time_keys: list[int] = field(default_factory=list)
    time_docs: list[StoredDoc] = field(default_factory=list)
    # srvModified index (documents that store one): strictly increasing keys.
    mod_keys: list[int] = field(default_factory=list)
    mod_docs: list[StoredDoc] = field(default_factory=list)
    last_modified: int = 0  # greatest srvModified ever handed out (never goes back)
    by_sys_time: dict[str, list[StoredDoc]] = field(default_factory=dict)  # entries only
    # Lazily rebuilt v3 default order; None when stale.
    identifier_order: list[StoredDoc] | None = None

    def add_to_time_index(self, docs: Sequence[StoredDoc]) -> None:
        if not docs:
            return
        if len(docs) > 64:
            merged = sorted(
                [*self.time_docs, *docs], key=lambda stored: (stored.event_ms, stored.seq)
            )
            self.time_docs = merged
            self.time_keys = [stored.event_ms for stored in merged]
            return
        for stored in docs:
            position = bisect_right(self.time_keys, stored.event_ms)
            self.time_keys.insert(position, stored.event_ms)
            self.time_docs.insert(position, stored)

    def remove_from_time_index(self, stored: StoredDoc) -> None:
        position = bisect_left(self.time_keys, stored.event_ms)
        while self.time_docs[position] is not stored:
            position += 1
        del self.time_keys[position]
        del self.time_docs[position]

    def add_to_mod_index(self, stored: StoredDoc) -> None:
        key = stored.srv_modified
        assert key is not None
        if not self.mod_keys or key > self.mod_keys[-1]:
            self.mod_keys.append(key)
            self.mod_docs.append(stored)
        else:
            position = bisect_right(self.mod_keys, key)
            self.mod_keys.insert(position, key)
            self.mod_docs.insert(position, stored)
        self.last_modified = max(self.last_modified, key)

    def remove_from_mod_index(self, stored: StoredDoc) -> None:
        key = stored.srv_modified
        assert key is not None
        position = bisect_left(self.mod_keys, key)
        while self.mod_docs[position] is not stored:
            position += 1
        del self.mod_keys[position]
        del self.mod_docs[position]


def iter_range(
    keys: list[int],
    docs: list[StoredDoc],
    low: int | None,
    high: int | None,
    descending: bool,
) -> Iterator[StoredDoc]:
    """The records whose keys lie in [low, high] (None: unbounded), in key order or reversed."""
    start = 0 if low is None else bisect_left(keys, low)
    stop = len(keys) if high is None else bisect_right(keys, high)
    positions = range(stop - 1, start - 1, -1) if descending else range(start, stop)
    for position in positions:
        yield docs[position]


def _link_sys_time(col: _Collection, stored: StoredDoc) -> None:
    if stored.sys_time is not None:
        col.by_sys_time.setdefault(stored.sys_time, []).append(stored)


def _unlink_sys_time(col: _Collection, stored: StoredDoc) -> None:
    if stored.sys_time is None:
        return
    bucket = col.by_sys_time.get(stored.sys_time)
    if bucket is None:
        return
    bucket[:] = [other for other in bucket if other is not stored]
    if not bucket:
        del col.by_sys_time[stored.sys_time]
