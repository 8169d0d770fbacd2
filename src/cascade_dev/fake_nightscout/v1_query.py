"""Nightscout's v1 query language: `find[...]` query strings into predicates, as `lib/server/query.js`
and Mongo would run them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cascade_dev.fake_nightscout.matching import ObjectIdValue, Predicate
from cascade_dev.fake_nightscout.protocol import (
    DELTA_AGO_MS,
    MONGO_OPERATORS,
    Params,
    QueryError,
    _js_regex,
    parse_int_js,
)
from cascade_dev.fake_nightscout.values import (
    is_canonical_iso,
    is_number,
    is_object_id,
    is_uuid,
    iso_ms,
    js_number,
    js_string,
    parse_iso_ms,
    parse_zone,
)

# --------------------------------------------------------------------------- v1 queries


def qs_tree(params: Params, root: str) -> Any:
    """What the `qs` parser (Express's extended query parser) makes of `root[...]` params.

    `find[a][$gte]=1` gives {"a": {"$gte": "1"}}; `[]` or `[0]` at the end appends to a list;
    a repeated key becomes a list. None when no such parameter is present.
    """
    tree: dict[str, Any] = {}
    prefix = root + "["
    found = False
    for key, value in params:
        if not key.startswith(prefix) or not key.endswith("]"):
            continue
        segments = key[len(prefix) : -1].split("][")
        listed = segments[-1] == "" or segments[-1].isdigit()
        path = segments[:-1] if listed else segments
        if not path:
            continue
        found = True
        node = tree
        for segment in path[:-1]:
            child = node.get(segment)
            if not isinstance(child, dict):
                child = {}
                node[segment] = child
            node = child
        leaf = path[-1]
        existing = node.get(leaf)
        if listed:
            items = (
                existing if isinstance(existing, list) else [] if existing is None else [existing]
            )
            node[leaf] = [*items, value]
        elif existing is None or isinstance(existing, dict):
            node[leaf] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            node[leaf] = [existing, value]
    return tree if found else None


@dataclass(frozen=True)
class QueryOptions:
    """A storage's options for `lib/server/query.js` create (after default_options).

    `walker` maps a field to "int" (parseInt) or "regex" (parseRegEx); `date_field` is the
    field that must carry a time condition; `use_epoch` writes the default bound as ms
    rather than as an ISO string; `uuid_handling` lets a UUID `_id` find `identifier`.
    """

    walker: Mapping[str, str]
    date_field: str = "date"
    use_epoch: bool = False
    uuid_handling: bool = False
    delta_ago_ms: int = DELTA_AGO_MS


_INT = "int"
_REGEX = "regex"
ENTRIES_QUERY_OPTIONS: Final = QueryOptions(  # lib/server/entries.js query_for
    walker=dict.fromkeys(("date", "sgv", "filtered", "unfiltered", "rssi", "noise", "mbg"), _INT),
    date_field="date",
    use_epoch=True,
    uuid_handling=True,
)
TREATMENTS_QUERY_OPTIONS: Final = QueryOptions(  # lib/server/treatments.js query_for
    walker={
        "insulin": _INT,
        "carbs": _INT,
        "glucose": _INT,
        "notes": _REGEX,
        "eventType": _REGEX,
        "enteredBy": _REGEX,
    },
    date_field="created_at",
    uuid_handling=True,
)
DEVICESTATUS_QUERY_OPTIONS: Final = QueryOptions(  # lib/server/devicestatus.js queryOpts
    walker={"date": _INT, "sgv": _INT},  # query.js default walker (queryOpts names none)
    date_field="created_at",
)
PROFILES_QUERY_OPTIONS: Final = QueryOptions(  # lib/server/profile.js list_query
    walker={}, date_field="startDate"
)
COUNT_QUERY_OPTIONS: Final = QueryOptions(walker={"date": _INT, "sgv": _INT})
"""`lib/server/aggregate.js` calls query.js with no options, so for *every* storage the
time rule is query.js's default: a condition on `date` (or `dateString`, or `_id`) is
required, else `date >= <ISO string of 4 days ago>` is added, which no numeric `date`
matches (MongoDB does not compare strings with numbers). Hence:

- entries: `find[date][$gte]=0` counts every entry with a numeric `date` (parseInt'ed);
  without any such condition the answer is `[]`.
- treatments, devicestatus: they have no `date` (v1 uploads) or a numeric one (v3), so
  nothing is counted unless the rule is lifted: a condition on `_id` skips it
  (`if (!query._id)` in create). `find[_id][$ne]=000000000000000000000000` (24 zeros: an
  ObjectId no document has; updateIdQuery makes it an ObjectId) counts every document of
  any of the three storages, soft-deleted ones included; add
  `find[created_at][$gte]=1970-01-01T00:00:00.000Z` to count those v1 paging by
  `created_at` can see (a plain string compare: created_at is not the date field here, so
  it is not normalised). `find[dateString]...` also lifts the rule; `find[_id][$exists]=`
  anything works too (MongoDB reads any string as true).
"""

V1_QUERY_OPTIONS: Final = {
    "entries": ENTRIES_QUERY_OPTIONS,
    "treatments": TREATMENTS_QUERY_OPTIONS,
    "devicestatus": DEVICESTATUS_QUERY_OPTIONS,
    "profile": PROFILES_QUERY_OPTIONS,
}


def _js_is_nan(value: Any) -> bool:
    """JavaScript's global isNaN(value)."""
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, dict):
        return True
    return js_number(value) is None


def _walk(value: Any, typer: Callable[[Any], Any]) -> Any:
    """`traverse(...).forEach(... this.update(typer(leaf)))`: type every leaf."""
    if isinstance(value, dict):
        return {key: _walk(item, typer) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, typer) for item in value]
    return typer(value)


def _truthy(value: Any) -> bool:
    """JavaScript truthiness of a parsed query value."""
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value) or isinstance(value, dict | list)


def build_v1_query(
    find: Any, options: QueryOptions, now_ms: int, index_field: str | None = None
) -> list[Predicate]:
    """`lib/server/query.js` create(params, opts) as MongoDB predicates; raises QueryError
    where the real code throws (or MongoDB refuses the query).

    `index_field` (the store's time index) is compared as a time when a condition's value
    is in `toISOString()` form, which orders like MongoDB's string comparison.
    """
    query: dict[str, Any] = dict(find) if isinstance(find, dict) else {}
    # walker: typed fields (only when the value is truthy, as walk_prop checks)
    for name, kind in options.walker.items():
        if name in query and _truthy(query[name]):
            typer: Callable[[Any], Any] = parse_int_js if kind == _INT else _js_regex_leaf
            query[name] = _walk(query[name], typer)
    # enforceDateFilter, unless an _id is asked for
    if not _truthy(query.get("_id")):
        date_field = options.date_field
        date_value = query.get(date_field)
        if _truthy(date_value):
            query[date_field] = _normalise_dates(date_value)
        if not _truthy(query.get(date_field)) and not _truthy(query.get("dateString")):
            since = now_ms - options.delta_ago_ms
            query[date_field] = {"$gte": since if options.use_epoch else iso_ms(since)}
    predicates: list[Predicate] = []
    for name, condition in query.items():
        if name == "_id":
            predicates.extend(_id_predicates(condition, options))
            continue
        for op, value in _conditions(condition):
            predicates.append(_mongo_predicate(name, op, value, index_field))
    return predicates


def _js_regex_leaf(value: Any) -> Any:
    return _js_regex(value) if isinstance(value, str) else value


def _normalise_dates(date_value: Any) -> Any:
    """The loop of enforceDateFilter: every value that is not a number must be a time and
    is rewritten to `moment.parseZone(value).toISOString()`; a string is walked by index."""
    if is_number(date_value) and not math.isnan(date_value):
        return date_value  # Object.keys(number) is empty
    if isinstance(date_value, float):
        raise QueryError("dateString.replace is not a function")
    if isinstance(date_value, str):
        for char in date_value:  # Object.keys("...") are indices: each char is checked
            if _js_is_nan(char):
                raise QueryError(f"Cannot parse {char} as a valid ISO-8601 date")
        return date_value
    if not isinstance(date_value, dict):
        return date_value
    out: dict[str, Any] = {}
    for key, value in date_value.items():
        if _js_is_nan(value):
            if not isinstance(value, str):
                raise QueryError("dateString.replace is not a function")
            text = value.replace(" ", "+", 1)  # some clients don't escape the plus
            zoned = parse_zone(text)
            if zoned is None:
                raise QueryError(f"Cannot parse {text} as a valid ISO-8601 date")
            value = iso_ms(zoned[0])
        out[key] = value
    return out


def _conditions(condition: Any) -> list[tuple[str, Any]]:
    """A field's MongoDB condition as (operator, value) pairs."""
    if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
        pairs: list[tuple[str, Any]] = []
        options = condition.get("$options")
        for key, value in condition.items():
            op = key[1:]
            if op not in MONGO_OPERATORS:
                raise QueryError(f"unknown operator: {key}")
            if op == "options":
                continue
            if op in ("in", "nin") and not isinstance(value, list):
                raise QueryError(f"${op} needs an array")
            if op == "ne" and isinstance(value, re.Pattern):
                raise QueryError("Can't have regex as arg to $ne")
            if op == "regex":
                value = _mongo_regex(value, options)
                op = "re"
            pairs.append((op, value))
        return pairs
    if isinstance(condition, dict) and any(k.startswith("$") for k in condition):
        raise QueryError("unknown top level operator")
    return [("eq", condition)]


def _mongo_regex(value: Any, options: Any) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    flags = 0
    for flag in js_string(options or ""):
        flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}.get(
            flag, 0
        )
    try:
        return re.compile(js_string(value), flags)
    except re.error as exc:
        raise QueryError("Regular expression is invalid") from exc


def _mongo_predicate(name: str, op: str, value: Any, index_field: str | None) -> Predicate:
    if (
        name == index_field
        and op in ("eq", "gt", "gte", "lt", "lte")
        and is_canonical_iso(value)
        and index_field != "date"
    ):
        parsed = parse_iso_ms(value)
        if parsed is not None:
            return Predicate(name, op, parsed, as_time=True)
    return Predicate(name, op, tuple(value) if op in ("in", "nin") else value)


def _id_value(value: Any, options: QueryOptions) -> Any:
    """normalizeIdValue: 24 hex is an ObjectId; anything else stays as it is."""
    if is_object_id(value):
        return ObjectIdValue(value.lower())
    return value


def _id_predicates(condition: Any, options: QueryOptions) -> list[Predicate]:
    """updateIdQuery of `lib/server/query.js`."""
    if isinstance(condition, str):
        if not is_object_id(condition) and options.uuid_handling and is_uuid(condition):
            return [Predicate("_id", "id_or_identifier", condition)]
        return [Predicate("_id", "eq", _id_value(condition, options))]
    typed = _walk(condition, lambda leaf: _id_value(leaf, options))
    return [
        Predicate("_id", op, tuple(value) if op in ("in", "nin") else value)
        for op, value in _conditions(typed)
    ]


def _limit(count: Any) -> int | None:
    """MongoDB `limit(parseInt(count))`: 0 or NaN is no limit; a negative one is its size."""
    number = parse_int_js(count)
    if isinstance(number, float) and math.isnan(number):
        return None
    return abs(int(number)) or None
