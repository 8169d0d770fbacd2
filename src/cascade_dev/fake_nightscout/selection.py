"""Running a `Query` over stored records: index bounds, cheap checks first, paging.

A query ordered by an indexed field starts at a bisected bound and stops once the page is
full; `_Filter` checks conditions on server fields and the index key without parsing the
document, and parses it only for a condition on any other field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from cascade_dev.fake_nightscout.matching import (
    _MISSING,
    ObjectIdValue,
    Predicate,
    Query,
    match_value,
    matches,
)
from cascade_dev.fake_nightscout.records import StoredDoc
from cascade_dev.fake_nightscout.schema import INDEX_FIELDS
from cascade_dev.fake_nightscout.values import is_number


def _bounds(
    predicates: Sequence[Predicate], field_name: str, as_time: bool
) -> tuple[int | None, int | None]:
    """Inclusive integer index bounds implied by range conditions on an indexed field.

    Keys are integers, so `> 1.5` is `>= 2` and `< 7` is `<= 6`: a record whose key is
    its field's value (`key_exact`) and lies within the bounds satisfies these conditions.
    """
    low: int | None = None
    high: int | None = None
    for predicate in predicates:
        if predicate.path != field_name or predicate.as_time != as_time:
            continue
        value = predicate.value
        if not is_number(value) or not math.isfinite(value):
            continue
        op = predicate.op
        if op in ("gt", "gte", "eq"):
            bound = math.floor(value) + 1 if op == "gt" else math.ceil(value)
            low = bound if low is None else max(low, bound)
        if op in ("lt", "lte", "eq"):
            bound = math.ceil(value) - 1 if op == "lt" else math.floor(value)
            high = bound if high is None else min(high, bound)
    return low, high


def _covered(predicate: Predicate) -> bool:
    """Whether index bounds enforce this condition exactly (for records with exact keys)."""
    return predicate.op in ("gt", "gte", "lt", "lte", "eq") and is_number(predicate.value)


def _has_range(predicates: Sequence[Predicate], path: str) -> bool:
    return any(p.path == path and _covered(p) and not p.as_time for p in predicates)


class _Filter:
    """Checks a query's conditions against stored records, parsing a document only when a
    condition names a field the record does not carry (server fields and the index key).

    `walked` names the index the candidates come from (bisected by `_bounds`): its range
    conditions already hold for records whose key is exact and are not checked again.
    """

    def __init__(
        self, collection: str, predicates: Sequence[Predicate], walked: str | None = None
    ) -> None:
        index_field, index_as_time = INDEX_FIELDS[collection]
        self.cheap: list[Predicate] = []
        self.indexed: list[Predicate] = []
        self.parsed: list[Predicate] = []
        for predicate in predicates:
            path = predicate.path
            if path == "srvModified" and walked == "srvModified" and _covered(predicate):
                continue  # the srvModified index key is always exact
            if path in ("srvModified", "identifier", "_id") and not predicate.as_time:
                self.cheap.append(predicate)
            elif path == index_field and predicate.as_time == index_as_time:
                # numeric entries `date` (any value: a string never equals a number), or a
                # parsed time compared with a time
                if index_as_time and not is_number(predicate.value):
                    self.parsed.append(predicate)
                else:
                    self.indexed.append(predicate)
            else:
                self.parsed.append(predicate)
        self.indexed_covered = walked == index_field and all(_covered(p) for p in self.indexed)

    def __call__(self, stored: StoredDoc) -> bool:
        for predicate in self.cheap:
            if not _match_cheap(stored, predicate):
                return False
        doc: dict[str, Any] | None = None
        if self.indexed and not (self.indexed_covered and stored.key_exact):
            for predicate in self.indexed:
                if stored.key_exact:
                    if not match_value(stored.event_ms, predicate.op, predicate.value):
                        return False
                    continue
                if doc is None:
                    doc = stored.doc
                if not matches(doc, predicate):
                    return False
        if self.parsed:
            if doc is None:
                doc = stored.doc
            return all(matches(doc, predicate) for predicate in self.parsed)
        return True


def _match_cheap(stored: StoredDoc, predicate: Predicate) -> bool:
    path, op, wanted = predicate.path, predicate.op, predicate.value
    if path == "srvModified":
        value: Any = _MISSING if stored.srv_modified is None else stored.srv_modified
    elif path == "identifier":
        value = _MISSING if stored.identifier is None else stored.identifier
    elif op == "id_or_identifier":  # `_id` given as a UUID: {$or: [{identifier}, {_id}]}
        return bool(stored.identifier == wanted)
    else:  # _id is an ObjectId: it equals only an ObjectId query value, never a string
        value = ObjectIdValue(stored.oid)
    return match_value(value, op, wanted)


def _take(candidates: Iterable[StoredDoc], check: _Filter, query: Query) -> list[StoredDoc]:
    """Filter candidates in order, skipping and limiting without reading past the page."""
    only_valid = query.only_valid
    skip = query.skip
    limit = query.limit
    found: list[StoredDoc] = []
    for stored in candidates:
        if only_valid and not stored.is_valid:
            continue
        if not check(stored):
            continue
        if skip:
            skip -= 1
            continue
        found.append(stored)
        if limit is not None and len(found) >= limit:
            break
    return found
