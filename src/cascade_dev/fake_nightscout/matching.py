"""MongoDB's matching semantics for one document: conditions, comparison and sort order.

A `Predicate` is one condition as MongoDB would evaluate it (BSON type rules: values of
different types never compare, a missing field sorts as null); a `Query` adds order and
paging. The v1 query language and v3 search both compile to these; `selection` runs them
against the store's indexes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cascade_dev.fake_nightscout.values import is_number, time_value_ms

_BSON_RANK: Final = {type(None): 1, int: 2, float: 2, str: 3, dict: 4, list: 5, bool: 8}
_MISSING: Final = object()
_UNPARSEABLE: Final = object()


@dataclass(frozen=True, slots=True)
class ObjectIdValue:
    """A query value MongoDB holds as an ObjectId (`lib/server/query.js` updateIdQuery)."""

    hex: str


@dataclass(frozen=True, slots=True)
class Predicate:
    """One MongoDB-style condition on a (possibly dotted) field.

    Operators: eq ne gt gte lt lte in nin re exists, and `id_or_identifier` (a UUID `_id`
    that v1 looks up as `identifier` too, query.js with UUID_HANDLING). `as_time` compares
    the document's value parsed as a time (epoch ms) with a numeric `value`; otherwise values
    compare as MongoDB does: numbers with numbers, strings with strings, and values of
    different types are never ordered (so `$gt` is false and `$ne` is true).
    """

    path: str
    op: str
    value: Any
    as_time: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A search: conditions (all must hold), order, paging.

    `sort_field=None` is API v3's default order ({identifier, created_at, date}). `only_valid`
    hides soft-deleted documents, as v3 search does; v1 and history pass False.
    """

    predicates: tuple[Predicate, ...] = ()
    sort_field: str | None = None
    descending: bool = False
    skip: int = 0
    limit: int | None = None
    only_valid: bool = True


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or `_MISSING` (MongoDB dotted-field semantics, no arrays)."""
    if "." not in path:
        return doc.get(path, _MISSING)
    current: Any = doc
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _compare(left: Any, right: Any) -> int | None:
    """-1/0/1, or None when MongoDB would not compare the two (different BSON types)."""
    if (is_number(left) and is_number(right)) or (
        isinstance(left, str | bool) and type(left) is type(right)
    ):
        ordered: Any = left
        return int(ordered > right) - int(ordered < right)
    if left is None and right is None:
        return 0
    if isinstance(left, ObjectIdValue) and isinstance(right, ObjectIdValue):
        return int(left.hex > right.hex) - int(left.hex < right.hex)
    if isinstance(left, dict | list) and type(left) is type(right):
        return 0 if left == right else None
    return None


def _equals(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, re.Pattern):
        return _regex(value, wanted)
    if isinstance(value, list) and not isinstance(wanted, list):
        return any(_compare(item, wanted) == 0 for item in value)
    return _compare(value, wanted) == 0


def _regex(value: Any, wanted: re.Pattern[str]) -> bool:
    if isinstance(value, list):
        return any(isinstance(item, str) and wanted.search(item) for item in value)
    return isinstance(value, str) and wanted.search(value) is not None


def _ordered(value: Any, wanted: Any, op: str) -> bool:
    if isinstance(value, list):
        return any(_ordered(item, wanted, op) for item in value)
    order = _compare(value, wanted)
    if order is None:
        return False
    if op == "gt":
        return order > 0
    if op == "gte":
        return order >= 0
    if op == "lt":
        return order < 0
    return order <= 0


def bson_true(value: Any) -> bool:
    """MongoDB's `BSONElement::trueValue`, what `$exists: value` means: only false, 0 and null
    are false; any string (even "false") is true."""
    if value is None or value is False:
        return False
    if is_number(value):
        return bool(value) or (isinstance(value, float) and math.isnan(value))
    return True


def match_value(value: Any, op: str, wanted: Any) -> bool:
    """Whether an already looked-up value (maybe `_MISSING`) satisfies `op wanted`."""
    if op == "exists":
        return (value is not _MISSING) == bson_true(wanted)
    if op == "eq":
        return wanted is None if value is _MISSING else _equals(value, wanted)
    if op == "ne":
        return wanted is not None if value is _MISSING else not _equals(value, wanted)
    if op in ("in", "nin"):
        found = any(
            (value is _MISSING and item is None) or (value is not _MISSING and _equals(value, item))
            for item in wanted
        )
        return found if op == "in" else not found
    if value is _MISSING or value is _UNPARSEABLE:
        return False
    if op == "re":
        return _regex(value, wanted)
    return _ordered(value, wanted, op)


def matches(doc: Mapping[str, Any], predicate: Predicate) -> bool:
    """Whether a document satisfies one condition."""
    value = lookup(doc, predicate.path)
    if predicate.as_time and value is not _MISSING:
        parsed = time_value_ms(value)
        value = _UNPARSEABLE if parsed is None else parsed
    return match_value(value, predicate.op, predicate.value)


def sort_key(value: Any) -> tuple[int, Any]:
    """MongoDB's cross-type sort order (missing/null < numbers < strings < objects ...)."""
    if value is _MISSING:
        return (1, 0)  # MongoDB sorts a missing field as null
    rank = _BSON_RANK.get(type(value), 9)
    if rank in (2, 3, 8):
        return (rank, value)
    if rank == 1:
        return (rank, 0)
    return (rank, json.dumps(value, sort_keys=True, default=str))
