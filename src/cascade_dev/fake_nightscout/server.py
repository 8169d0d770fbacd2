"""A fake Nightscout 15.0.7 over real HTTP: several sites, API v1, v2 auth and v3, faults on demand.

Tests, the demo and benchmarks need a Nightscout that behaves like the real one where a
reader can tell the difference, without Node and MongoDB. Each site (one person) lives
under a path prefix: `http://HOST:PORT/<site_id>/api/v1/...`. Semantics follow
nightscout/cgm-remote-monitor 15.0.7; file names below refer to it, and each behaviour is
implemented next to a comment naming the file it comes from.

- Storage (`store.py`): documents uploaded through v1 carry no `identifier`, `srvCreated`,
  `srvModified` or `isValid`; only v3 writes add them. v3 history filters on the stored
  `srvModified`, so it never sees a v1 upload; v3 search/read show one with `identifier` =
  `_id` and `srvModified` = `srvCreated` = its event time.
- v1 reads (`lib/api/*/index.js`, `lib/server/query.js`): newest first; default `count`
  entries 10, treatments 100 (1000 with a `find`), devicestatus 10, profile 10; `find`
  conditions typed as each storage's query options say; without a condition on the time
  field (or `dateString`, or `_id`) only the last 4 days are searched. Soft-deleted
  documents are returned like any other, with `isValid: false` (15.0.7 has no filter).
- `/api/v1/count/<storage>/where` (`lib/server/aggregate.js`): `[{"_id": null, "count": n}]`,
  or `[]` when nothing matches; see `COUNT_QUERY_OPTIONS` for the time rule it applies.
- v1 writes (`POST /api/v1/{entries,treatments,devicestatus,profile}`, `DELETE` by id) with
  an admin `api-secret` (SHA-1 of the secret), a token or a JWT.
- v3 (`lib/api3`): answers wrapped `{"status", "result"}`; always needs a JWT in
  `Authorization: Bearer` (even on an open site), except `/api/v3/version`; search, read,
  history (strictly after the cursor, by `srvModified`, deletions included), create (with
  v3's deduplication), update, patch and (soft or permanent) delete.
- auth (`lib/authorization`): `AUTH_DEFAULT_ROLES` decide what anonymous v1 requests may do
  ("readable" = an open site); `api-secret`/`?secret=` (admin), access tokens (`?token=`,
  also as `api-secret`), JWTs (`Authorization: Bearer`) from
  `/api/v2/authorization/request/<token>`; subjects (tokens with roles) are created with
  `POST /api/v2/authorization/subjects` and listed with `GET` on the same path.

Faults ("slow", "429", "500", "503", "drop", "truncate", "malformed_json") are injected
per request, by count and path, or at random, so retry and backoff code can be tested
against real sockets. Nothing here logs requests or echoes secrets.

Known simplifications: a time condition on `created_at`/`startDate` compares instants,
which is what MongoDB's string comparison gives for the `toISOString()` form every v1/v3
write stores (seeded documents with other spellings may differ); `srvModified` values are
unique per collection; no in-memory cache paths, preBolus split, `times`/`slice`/`echo`
routes, or failed-authentication delay (`lib/authorization/delaylist.js`, 5 s per failure
and IP on a real server).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt

from cascade_dev.fake_nightscout.store import (
    COLLECTIONS,
    INDEX_FIELDS,
    MIN_TIMESTAMP,
    Api,
    DuplicateKeyError,
    InvalidIdError,
    ObjectIdValue,
    Predicate,
    Query,
    SiteStore,
    StoredDoc,
    dumps,
    http_date,
    is_canonical_iso,
    is_number,
    is_object_id,
    is_uuid,
    iso_ms,
    js_number,
    js_string,
    number_in_string,
    parse_iso_ms,
    parse_to_moment,
    parse_to_moment_ms,
    parse_zone,
    time_value_ms,
    v1_array,
    v3_identifier,
)

NIGHTSCOUT_VERSION: Final = "15.0.7"
API3_VERSION: Final = "3.0.3-alpha"
"""`lib/api3/const.json` API3_VERSION of Nightscout 15.0.7."""
FAULT_KINDS: Final = ("slow", "429", "500", "503", "drop", "truncate", "malformed_json")
DELTA_AGO_MS: Final = 2 * 172_800_000
"""`lib/server/query.js` default deltaAgo (TWO_DAYS * 2): a v1 read that names no time
condition sees only this far back."""
V1_DEFAULT_WINDOW_MS: Final = DELTA_AGO_MS
ENTRIES_DEFAULT_COUNT: Final = 10  # lib/constants.json
PROFILES_DEFAULT_COUNT: Final = 10  # lib/constants.json
DEVICESTATUS_DEFAULT_COUNT: Final = 10  # lib/api/devicestatus/index.js
API3_MAX_LIMIT: Final = 1000  # lib/api3/const.json
JWT_LIFETIME_SECONDS: Final = 8 * 3600  # lib/server/enclave.js signJWT: expiresIn '8h'
V3_RESERVED: Final = frozenset({"token", "sort", "sort$desc", "limit", "skip", "fields", "now"})
V3_OPERATORS: Final = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "re"})
V3_COLLECTIONS: Final = ("devicestatus", "entries", "food", "profile", "settings", "treatments")
V3_IMMUTABLE: Final = (
    "identifier",
    "date",
    "utcOffset",
    "eventType",
    "device",
    "app",
    "srvCreated",
    "subject",
    "srvModified",
    "modifiedBy",
    "isValid",
)
"""`lib/api3/generic/update/validate.js`: fields an update or patch must not change."""
MONGO_OPERATORS: Final = frozenset(
    {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists", "regex", "options"}
)
REDACTED: Final = "<redacted>"
_SECRET_PARAMS: Final = frozenset({"token", "secret"})
_V3_FILTER_KEY = re.compile(r"^(.*)\$([a-zA-Z]+)$")
_INT_PREFIX = re.compile(r"^\s*([-+]?)(0[xX][0-9a-fA-F]+|\d+)")
_JS_REGEX = re.compile(r"/(.*)/(.*)", re.DOTALL)
_ENTRY_ID = re.compile(r"^[a-f\d]{24}$")  # lib/api/entries/index.js ID_PATTERN (lowercase)
_JSON: Final = "application/json; charset=utf-8"
_NO_CONTENT: Final = object()

Headers = Mapping[str, str]
Params = Sequence[tuple[str, str]]


# --------------------------------------------------------------------------- small types


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake served, for tests (secrets in query and path are redacted).

    `status` is 0 when the connection was dropped without an answer; `fault` names the
    injected fault, if any; `site_id` is None for paths outside any site.
    """

    method: str
    site_id: str | None
    path: str
    query: dict[str, str]
    status: int
    fault: str | None = None
    duration_seconds: float = 0.0


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = _JSON

    def with_headers(self, headers: Mapping[str, str]) -> _Response:
        self.headers.update(headers)
        return self


@dataclass
class _FaultRule:
    kind: str
    times: int
    path_contains: str | None
    delay_seconds: float


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, dumps(payload), headers or {})


def _error(status: int, message: str, **extra: Any) -> _Response:
    """`sendJSONStatus` shape: {"status": code, "message": ...} (+ description, if any)."""
    return _json_response(status, {"status": status, "message": message, **extra})


def _v1_error(status: int, message: str, description: Any = None) -> _Response:
    """`lib/middleware/send-json-status.js` (description left out when undefined)."""
    payload: dict[str, Any] = {"status": status, "message": message}
    if description is not None:
        payload["description"] = description
    return _json_response(status, payload)


def _v3_status(status: int, **fields: Any) -> _Response:
    """`lib/api3/shared/operationTools.js` sendJSON without a result: {"status": code, ...}."""
    return _json_response(status, {"status": status, **fields})


def _unauthorized() -> _Response:
    """v1's `isPermitted` refusal (lib/authorization/index.js)."""
    return _v1_error(401, "Unauthorized", "Invalid/Missing")


def _express_404(method: str, path: str) -> _Response:
    """What Express answers for a route it does not know (an old Nightscout's /api/v3)."""
    body = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
        f"</head>\n<body>\n<pre>Cannot {method} {_redact_path(path)}</pre>\n</body>\n</html>\n"
    ).encode()
    return _Response(404, body, content_type="text/html; charset=utf-8")


def _wrap_list(parts: Sequence[bytes]) -> bytes:
    return b'{"status":200,"result":[' + b",".join(parts) + b"]}"


def _wrap(result: Any) -> bytes:
    return b'{"status":200,"result":' + dumps(result) + b"}"


class QueryError(ValueError):
    """A v1 query the real server fails on (an exception inside `lib/server/query.js` or a
    MongoDB error); each route answers it the way Nightscout's does."""


# --------------------------------------------------------------------------- value parsing


def parse_int_js(text: Any) -> float | int:
    """JavaScript's parseInt(String(text)): leading integer (or 0x hex), else NaN."""
    found = _INT_PREFIX.match(js_string(text))
    if not found:
        return math.nan
    sign, digits = found.groups()
    number = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits)
    return -number if sign == "-" else number


def parse_v3_time(value: str | float) -> int | None:
    """Nightscout's `dateTools.parseToMoment` in ms (>= 2000-01-01), else None."""
    return parse_to_moment_ms(value)


def _js_regex(text: str) -> re.Pattern[str] | str:
    """`parseRegEx` of `lib/server/query.js`: `/pattern/flags` anywhere in the string."""
    found = _JS_REGEX.search(text)
    if not found:
        return text
    pattern, flag_text = found.groups()
    flags = 0
    for flag in flag_text:
        if flag == "i":
            flags |= re.IGNORECASE
        elif flag == "m":
            flags |= re.MULTILINE
        elif flag == "s":
            flags |= re.DOTALL
        elif flag not in "guyd":
            raise QueryError(f"Invalid flags supplied to RegExp constructor '{flag_text}'")
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise QueryError(f"Invalid regular expression: /{pattern}/") from exc


def _v3_value(field_name: str, raw: str) -> Any:
    """`lib/api3/generic/search/input.js` parseValue: numbers, booleans, quotes, dates."""
    value: Any = raw
    number = number_in_string(raw)
    if number is not None:
        value = number
    if value == "true":
        value = True
    elif value == "false":
        value = False
    if isinstance(value, str) and len(value) >= 2 and value.startswith("'") and value.endswith("'"):
        value = value[1:-1]
    if field_name in ("date", "srvModified", "srvCreated"):
        parsed = parse_to_moment_ms(value)
        if parsed is not None:
            value = parsed
    if field_name == "created_at":
        moment = parse_to_moment(value)
        if moment is not None:
            value = iso_ms(moment[0])
    return value


def _redact_query(params: Params) -> dict[str, str]:
    return {key: (REDACTED if key in _SECRET_PARAMS else value) for key, value in params}


def _redact_path(path: str) -> str:
    prefix = "/api/v2/authorization/request/"
    return prefix + REDACTED if path.startswith(prefix) else path


def _project(doc: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """v3 `fields=a,b`: keep only the named top-level fields (`lib/api3/shared/
    fieldsProjector.js` applyProjection deletes every other key)."""
    return {key: value for key, value in doc.items() if key in fields and key != "_id"}


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


# --------------------------------------------------------------------------- auth

ROLE_PERMISSIONS: Final[Mapping[str, tuple[str, ...]]] = {
    # lib/authorization/storage.js defaultRoles
    "admin": ("*",),
    "denied": (),
    "status-only": ("api:status:read",),
    "readable": ("*:*:read",),
    "careportal": ("api:treatments:create",),
    "devicestatus-upload": ("api:devicestatus:create",),
    "activity": ("api:activity:create",),
}
_NON_WORD = re.compile(r"[^A-Za-z0-9_]")


def shiro_implies(pattern: str, permission: str) -> bool:
    """Whether an Apache Shiro-style pattern (`*`, `*:*:read`, `api:entries`) grants a
    permission, as shiro-trie checks it: `*` matches one part, a shorter pattern the rest."""
    wanted = permission.split(":")
    parts = pattern.split(":")
    for position, part in enumerate(wanted):
        if position >= len(parts):
            return True
        choices = parts[position].split(",")
        if "*" not in choices and part not in choices:
            return False
    return all(part == "*" for part in parts[len(wanted) :])


@dataclass
class _Subject:
    """A token subject (`lib/authorization/storage.js`): roles and a derived access token."""

    oid: str
    name: str
    roles: tuple[str, ...]
    digest: str
    access_token: str
    record: dict[str, Any]


@dataclass(frozen=True)
class _Grant:
    """What a request may do: Shiro patterns, and the subject whose token it showed."""

    patterns: tuple[str, ...]
    subject: _Subject | None = None
    defaults: bool = False

    def can(self, permission: str) -> bool:
        return any(shiro_implies(pattern, permission) for pattern in self.patterns)


_ADMIN_GRANT: Final = _Grant(("*",))


class _Auth:
    """Nightscout's authorization (`lib/authorization/index.js`, `storage.js`, `enclave.js`).

    `default_roles` (AUTH_DEFAULT_ROLES) is what a request without credentials gets:
    "readable" for an open site, "denied" for a locked one. A request *with* credentials
    that fail is refused whatever the default roles (`resolve` returns no permissions).
    """

    def __init__(
        self,
        api_secret: str | None,
        tokens: Iterable[str],
        lifetime_seconds: int,
        clock: Callable[[], float],
        default_roles: Sequence[str],
        api3_security: bool,
    ) -> None:
        self._sha1 = hashlib.sha1(api_secret.encode()).hexdigest() if api_secret else None
        self._sha512 = hashlib.sha512(api_secret.encode()).hexdigest() if api_secret else None
        self.default_roles = tuple(role for role in default_roles if role)
        self.open = self.can_default("api:entries:read")
        self.api3_security = api3_security
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._subjects: list[_Subject] = []
        for token in tokens:
            # A real access token is `<name>-<16 hex>`; a shorter one given here (a test's
            # shorthand) is accepted by exact match only, which Nightscout itself never does.
            name, _, suffix = token.rpartition("-")
            name = name or token
            oid = hashlib.blake2b(token.encode(), digest_size=12).hexdigest()
            self._subjects.append(
                _Subject(
                    oid=oid,
                    name=name,
                    roles=("readable",),
                    digest=suffix,
                    access_token=token,
                    record={"_id": oid, "name": name, "roles": ["readable"]},
                )
            )

    # ---------------------------------------------------------------- building blocks

    def _patterns(self, roles: Iterable[str]) -> tuple[str, ...]:
        return tuple(pattern for role in roles for pattern in ROLE_PERMISSIONS.get(role, ()))

    def can_default(self, permission: str) -> bool:
        return _Grant(self._patterns(self.default_roles)).can(permission)

    def is_api_key(self, value: str) -> bool:
        """`enclave.isApiKey`: the SHA-1 (any case) or SHA-512 hex of API_SECRET."""
        if self._sha1 is None or self._sha512 is None:
            return False
        return hmac.compare_digest(value.lower().encode(), self._sha1.encode()) or (
            hmac.compare_digest(value.encode(), self._sha512.encode())
        )

    def find_subject(self, access_token: str | None) -> _Subject | None:
        """`storage.findSubject`: the last `-` part (16+ characters) starts a subject's
        digest, or the whole token starts the SHA-1 of a subject's token."""
        if not access_token:
            return None
        prefix = access_token.split("-")[-1]
        if len(prefix) < 16:
            with self._lock:  # a short token given to the constructor: exact match only
                return next(
                    (
                        s
                        for s in self._subjects
                        if len(s.digest) < 16 and s.access_token == access_token
                    ),
                    None,
                )
        with self._lock:
            for subject in self._subjects:
                token_digest = hashlib.sha1(subject.access_token.encode()).hexdigest()
                if token_digest.startswith(access_token) or subject.digest.startswith(prefix):
                    return subject
        return None

    def sign(self, access_token: str) -> tuple[str, int, int]:
        iat = int(self.clock())
        exp = iat + self.lifetime_seconds
        token = jwt.encode({"accessToken": access_token, "iat": iat, "exp": exp}, self._key)
        return token, iat, exp

    def verify(self, token: str | None) -> dict[str, Any] | None:
        """`enclave.verifyJWT`: the claims of a JWT signed here and not expired, else None."""
        if not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return None
        exp = claims.get("exp")
        if isinstance(exp, int | float) and self.clock() >= exp:
            return None
        return claims

    def authorize(self, access_token: str) -> dict[str, Any] | None:
        """`authorization.authorize`: a fresh JWT for an access token (or a valid JWT)."""
        claims = self.verify(access_token)
        user_token = claims.get("accessToken") if claims else None
        subject = self.find_subject(user_token if isinstance(user_token, str) else access_token)
        if subject is None:
            return None
        token, iat, exp = self.sign(subject.access_token)
        roles = list(dict.fromkeys([*subject.roles, *self.default_roles]))
        return {
            "token": token,
            "sub": subject.name,
            "permissionGroups": [list(ROLE_PERMISSIONS.get(role, ())) for role in roles],
            "iat": iat,
            "exp": exp,
        }

    def _subject_grant(self, subject: _Subject) -> _Grant:
        return _Grant(self._patterns([*subject.roles, *self.default_roles]), subject)

    def resolve(self, secret: str | None, token: str | None) -> _Grant | None:
        """`authorization.resolve`: default roles without credentials, admin for the API
        secret, a subject's roles (plus defaults) for a valid JWT or access token given as
        the secret; None (refused) when credentials were given and none is valid."""
        if secret == "null":
            secret = None
        if not secret and not token:
            return _Grant(self._patterns(self.default_roles), defaults=True)
        if secret and self.is_api_key(secret):
            return _ADMIN_GRANT
        claims = self.verify(token)
        access = claims.get("accessToken") if claims else None
        if not access and secret and self.find_subject(secret):
            access = secret
        if isinstance(access, str) and access:
            subject = self.find_subject(access)
            return None if subject is None else self._subject_grant(subject)
        return None

    # ---------------------------------------------------------------- per API

    def v1(self, headers: Headers, params: Mapping[str, str], body: Any = None) -> _Grant | None:
        """The grant of a v1 request (`isPermitted`), or None: refused (401)."""
        secret = params.get("secret") or headers.get("api-secret") or _body_field(body, "secret")
        token: str | None = None
        parts = (headers.get("authorization") or "").split(" ")
        if len(parts) == 2 and parts[0] == "Bearer":  # extractJWTfromRequest (case-sensitive)
            token = parts[1]
        if not token:
            access = params.get("token") or _body_field(body, "token")
            if access:
                authorized = self.authorize(access)
                token = authorized["token"] if authorized else None
        return self.resolve(secret or None, token or None)

    def v3(self, headers: Headers) -> _Grant | _Response | None:
        """`lib/api3/security.js` authenticate: only `Authorization: Bearer <JWT>`.

        Returns the 401 to answer, or the grant; None means a valid JWT whose subject is
        gone (every permission check then answers 403).
        """
        if not self.api3_security:  # API3_SECURITY_ENABLE=false
            return _ADMIN_GRANT
        parts = (headers.get("authorization") or "").split(" ")
        token = parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None
        if not token:
            return _error(401, "Missing or bad access token or JWT")
        claims = self.verify(token)
        access = claims.get("accessToken") if claims else None
        if not isinstance(access, str) or not access:
            return _error(401, "Bad access token or JWT")
        subject = self.find_subject(access)
        return None if subject is None else self._subject_grant(subject)

    # ---------------------------------------------------------------- subjects

    def create_subject(self, payload: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """`POST /api/v2/authorization/subjects` (storage.createSubject + reload)."""
        if self._sha1 is None:
            raise ValueError("subjects need an API_SECRET")
        record = dict(payload)
        if "created_at" not in record:
            record["created_at"] = iso_ms(now_ms)
        oid = secrets.token_hex(12)
        record["_id"] = oid
        name = js_string(record.get("name", ""))
        roles = record.get("roles")
        roles_tuple = tuple(js_string(role) for role in roles) if isinstance(roles, list) else ()
        digest = hashlib.sha1((self._sha1 + oid).encode()).hexdigest()
        abbrev = _NON_WORD.sub("", name.lower())[:10]
        subject = _Subject(oid, name, roles_tuple, digest, f"{abbrev}-{digest[:16]}", record)
        with self._lock:
            self._subjects.append(subject)
            self._subjects.sort(key=lambda item: item.name)
        return record

    def list_subjects(self) -> list[dict[str, Any]]:
        """`GET /api/v2/authorization/subjects`: _id, name, accessToken, roles."""
        with self._lock:
            return [
                {
                    "_id": subject.oid,
                    "name": subject.name,
                    "accessToken": subject.access_token,
                    "roles": list(subject.roles),
                }
                for subject in self._subjects
            ]


def _body_field(body: Any, name: str) -> str | None:
    """A secret or token sent in a JSON body (and taken out of it, as Nightscout does)."""
    holder = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else body
    if isinstance(holder, dict) and holder.get(name):
        return js_string(holder.pop(name))
    return None


# --------------------------------------------------------------------------- faults


class _Faults:
    """Faults to inject: counted rules first (in order), then random ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_FaultRule] = []
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self._random = random.Random(0)
        self._random_delay = 0.5

    def add(self, kind: str, times: int, path_contains: str | None, delay_seconds: float) -> None:
        _check_kind(kind)
        with self._lock:
            self._rules.append(_FaultRule(kind, times, path_contains, delay_seconds))

    def set_random(
        self, rate: float, kinds: Sequence[str], seed: int, delay_seconds: float
    ) -> None:
        for kind in kinds:
            _check_kind(kind)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        with self._lock:
            self._rate = rate if kinds else 0.0
            self._kinds = tuple(kinds)
            self._random = random.Random(seed)
            self._random_delay = delay_seconds

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._rate = 0.0

    def pending(self) -> int:
        with self._lock:
            return sum(rule.times for rule in self._rules)

    def pick(self, target: str) -> tuple[str, float] | None:
        """The fault for a request to `target` (path and query), consuming one use."""
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and (rule.path_contains is None or rule.path_contains in target):
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    return rule.kind, rule.delay_seconds
            if self._rate and self._random.random() < self._rate:
                return self._random.choice(self._kinds), self._random_delay
        return None


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; choose from {', '.join(FAULT_KINDS)}")


# --------------------------------------------------------------------------- HTTP plumbing


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined by server_close (in `stop`), so a stopped server leaves none.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: FakeNightscout) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (e.g. after its own timeout) is normal here; say nothing."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return
        print(f"fake nightscout: request failed: {type(error).__name__}", file=sys.stderr)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup of the host (slow without DNS)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    """Parses HTTP and hands requests to `FakeNightscout`; writes each answer in one send."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    server_version = "FakeNightscout"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a reader's requests carry tokens, and tests want quiet output."""

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.app._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.app._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        self.server.app._handle(self, method, body)

    def send(self, response: _Response, *, truncate_body: bool = False) -> None:
        """Write status, headers and body with a single sendall (no Nagle stalls)."""
        body = response.body
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if truncate_body:
            self.wfile.write(head + body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(head + body)


# --------------------------------------------------------------------------- the server


class FakeNightscout:
    """Several fake Nightscout sites behind one real HTTP server.

    Use as a context manager (`with FakeNightscout(stores).start() as ns:` or just
    `with FakeNightscout(stores) as ns:`), then point a client at `ns.site_url(site_id)`.

    Auth: `api_secret` is API_SECRET; `tokens` are access tokens of "readable" subjects
    (`<name>-<16+ characters>`); `auth_default_roles` is AUTH_DEFAULT_ROLES ("readable":
    an open site, "denied": a locked one; by default open exactly when there is neither a
    secret nor a token). `api3_security=False` is API3_SECURITY_ENABLE=false (v3 without
    auth); by default v3 wants a JWT, as on every real site.
    """

    def __init__(
        self,
        stores: Mapping[str, SiteStore],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_secret: str | None = None,
        tokens: Iterable[str] = (),
        jwt_lifetime_seconds: int = JWT_LIFETIME_SECONDS,
        max_limit: int = API3_MAX_LIMIT,
        v3_enabled: bool = True,
        auth_clock: Callable[[], float] | None = None,
        auth_default_roles: str | Sequence[str] | None = None,
        api3_security: bool = True,
    ) -> None:
        """`auth_clock` (epoch seconds) drives JWT issue and expiry; tests pass a fake one."""
        self.stores: dict[str, SiteStore] = dict(stores)
        self.host = host
        self.port = port
        self.max_limit = max_limit
        self.v3_enabled = v3_enabled
        tokens = list(tokens)
        if auth_default_roles is None:
            auth_default_roles = "readable" if api_secret is None and not tokens else "denied"
        roles = (
            re.split(r"[, :]", auth_default_roles)
            if isinstance(auth_default_roles, str)
            else list(auth_default_roles)
        )
        self._auth = _Auth(
            api_secret, tokens, jwt_lifetime_seconds, auth_clock or time.time, roles, api3_security
        )
        self._faults = _Faults()
        self._stats_lock = threading.Lock()
        self._recorded = threading.Condition(self._stats_lock)  # notified on every request
        self.requests: list[RequestRecord] = []
        self.max_concurrent_seen = 0
        self.max_concurrent_by_site: dict[str, int] = {}
        self._in_flight = 0
        self._in_flight_by_site: dict[str, int] = {}
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- construction

    @classmethod
    def synthetic(
        cls,
        *,
        subjects: int,
        days: int,
        interval_minutes: int = 5,
        seed: int = 0,
        dirty: bool = True,
        end: datetime | None = None,
        clock: Callable[[], int] | None = None,
        uploaded_through: Api = "v1",
        **kw: Any,
    ) -> FakeNightscout:
        """Sites filled by `cascade_dev.fake_nightscout.synthetic`, one per subject ("subject-01", ...).

        `uploaded_through` is the API the data came through: "v1" (like nearly every real
        uploader: no server fields, invisible to v3 history) or "v3".
        """
        return cls(
            synthetic_stores(
                subjects=subjects,
                days=days,
                interval_minutes=interval_minutes,
                seed=seed,
                dirty=dirty,
                end=end,
                clock=clock,
                uploaded_through=uploaded_through,
            ),
            **kw,
        )

    @property
    def open(self) -> bool:
        """Whether anonymous v1 requests may read (AUTH_DEFAULT_ROLES readable)."""
        return self._auth.open

    def create_token(self, name: str, roles: Sequence[str] = ("readable",)) -> str:
        """Create a subject with roles (as `POST /api/v2/authorization/subjects` does) and
        return its access token. Needs `api_secret`."""
        record = self._auth.create_subject(
            {"name": name, "roles": list(roles)}, int(time.time() * 1000)
        )
        for subject in self._auth.list_subjects():
            if subject["_id"] == record["_id"]:
                return str(subject["accessToken"])
        raise AssertionError("subject vanished")  # pragma: no cover

    def jwt_for(self, access_token: str) -> str:
        """A JWT for an access token (what `/api/v2/authorization/request/<token>` gives)."""
        authorized = self._auth.authorize(access_token)
        if authorized is None:
            raise KeyError("unknown access token")
        return str(authorized["token"])

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeNightscout:
        """Serve in a background thread; with port 0 a free port is picked (see `base_url`)."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fake-nightscout:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idle keep-alive ones included)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._stats_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()  # joins every handler thread: stopped means stopped
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeNightscout:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://host:port` (no trailing slash); only meaningful after `start()`."""
        return f"http://{self.host}:{self.port}"

    def site_url(self, site_id: str) -> str:
        """The URL to configure a client with for one site (what NIGHTSCOUT_URL would be)."""
        if site_id not in self.stores:
            raise KeyError(f"no site {site_id!r}; sites: {', '.join(self.site_ids)}")
        return f"{self.base_url}/{site_id}"

    @property
    def site_ids(self) -> list[str]:
        return sorted(self.stores)

    # ---------------------------------------------------------------- faults and stats

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        path_contains: str | None = None,
        delay_seconds: float = 2.0,
    ) -> None:
        """Make the next `times` matching requests fail in the given way.

        `path_contains` is matched against the raw request target (`/<site>/api/...?query`).
        Kinds: "slow" (sleep `delay_seconds`, then answer normally), "429" (with
        `Retry-After: 1`), "500", "503", "drop" (close the socket, no answer at all),
        "truncate" (full Content-Length, half the body, then close), "malformed_json"
        (200 with half the JSON body and a matching Content-Length).
        """
        self._faults.add(kind, times, path_contains, delay_seconds)

    def set_random_faults(
        self, rate: float, kinds: Sequence[str], seed: int = 0, *, delay_seconds: float = 0.5
    ) -> None:
        """Fail a share `rate` of requests with a kind drawn from `kinds` (seeded, repeatable)."""
        self._faults.set_random(rate, kinds, seed, delay_seconds)

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset_stats(self) -> None:
        """Forget recorded requests and concurrency peaks (e.g. between test phases)."""
        with self._stats_lock:
            self.requests = []
            self.max_concurrent_seen = 0
            self.max_concurrent_by_site = {}

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._stats_lock:
            if add and self._httpd is None:  # accepted just as `stop` began: close it now
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            elif add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _enter(self, site_id: str | None) -> None:
        with self._stats_lock:
            self._in_flight += 1
            self.max_concurrent_seen = max(self.max_concurrent_seen, self._in_flight)
            if site_id is not None:
                now = self._in_flight_by_site.get(site_id, 0) + 1
                self._in_flight_by_site[site_id] = now
                self.max_concurrent_by_site[site_id] = max(
                    self.max_concurrent_by_site.get(site_id, 0), now
                )

    def _leave(self, site_id: str | None) -> None:
        with self._stats_lock:
            self._in_flight -= 1
            if site_id is not None:
                self._in_flight_by_site[site_id] -= 1

    def _record(self, record: RequestRecord) -> None:
        with self._recorded:
            self.requests.append(record)
            self._recorded.notify_all()

    def wait_for_requests(
        self, predicate: Callable[[list[RequestRecord]], bool], timeout: float = 10.0
    ) -> bool:
        """Block until the recorded requests satisfy `predicate` (False after `timeout`)."""
        with self._recorded:
            return self._recorded.wait_for(lambda: predicate(self.requests), timeout)

    # ---------------------------------------------------------------- request handling

    def _handle(self, handler: _Handler, method: str, body: bytes) -> None:
        started = time.perf_counter()
        target = handler.path
        split = urlsplit(target)
        path = unquote(split.path)
        params = parse_qsl(split.query, keep_blank_values=True)
        if path == "/__admin" or path.startswith("/__admin/"):
            handler.send(self._admin(method, path, body))
            return

        site_id, rest = _split_site(path)
        site = site_id if site_id in self.stores else None
        fault = self._faults.pick(target)
        kind = fault[0] if fault else None
        self._enter(site)

        def record(status: int) -> None:
            # Recorded before the answer leaves: a client that has its answer can rely on the log.
            self._record(
                RequestRecord(
                    method=method,
                    site_id=site,
                    path=_redact_path(rest if site else path),
                    query=_redact_query(params),
                    status=status,
                    fault=kind,
                    duration_seconds=time.perf_counter() - started,
                )
            )

        try:
            if kind == "drop":
                record(0)
                handler.close_connection = True
                return
            if kind == "slow" and fault is not None:
                time.sleep(fault[1])
            if kind == "429":
                response = _error(429, "Too Many Requests")
                response.headers["Retry-After"] = "1"
            elif kind in ("500", "503"):
                code = int(kind)
                response = _error(code, HTTPStatus(code).phrase)
            else:
                headers = {key.lower(): value for key, value in handler.headers.items()}
                response = self._route_safely(method, site, site_id, rest, params, headers, body)
            if kind == "malformed_json":
                response = _Response(200, response.body[: max(1, len(response.body) // 2)])
            record(response.status)
            handler.send(response, truncate_body=kind == "truncate")
        finally:
            self._leave(site)

    def _route_safely(
        self,
        method: str,
        site: str | None,
        site_id: str,
        rest: str,
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes,
    ) -> _Response:
        try:
            if site is None:
                if site_id == "":
                    return _json_response(200, {"sites": self.site_ids})
                return _error(404, f"no such site: {site_id}")
            payload: Any = None
            if body:
                try:
                    payload = json.loads(body)
                except ValueError:
                    return _v1_error(400, "Bad Request", "request body is not JSON")
            return self._route(self.stores[site], method, rest, params, headers, payload)
        except Exception as exc:  # a bug in the fake answers 500, as Nightscout's error handler
            # Type and place only: the message could quote a query value such as a token.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            print(
                f"fake nightscout: internal error {type(exc).__name__} at "
                f"{where.filename}:{where.lineno}",
                file=sys.stderr,
            )
            return _error(500, "Internal Server Error")

    def _route(
        self,
        store: SiteStore,
        method: str,
        path: str,
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
    ) -> _Response:
        parts = [part for part in path.split("/") if part]
        if len(parts) >= 2 and parts[0] == "api":
            version, rest = parts[1], parts[2:]
            if version == "v1":
                return self._v1(store, method, rest, params, headers, body, path)
            if version == "v2":  # lib/api2/index.js: authorization, and v1 mounted again
                if rest[:1] == ["authorization"]:
                    return self._v2_authorization(
                        store, method, rest[1:], params, headers, body, path
                    )
                return self._v1(store, method, rest, params, headers, body, path)
            if version == "v3":
                if not self.v3_enabled:
                    return _express_404(method, path)
                return self._v3(store, method, rest, params, headers, body)
        return _express_404(method, path)

    # ---------------------------------------------------------------- API v2 authorization

    def _v2_authorization(
        self,
        store: SiteStore,
        method: str,
        parts: list[str],
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        path: str,
    ) -> _Response:
        """`lib/authorization/endpoints.js`."""
        if method == "GET" and len(parts) == 2 and parts[0] == "request":
            authorized = self._auth.authorize(parts[1])
            if authorized is None:
                return _unauthorized()
            return _json_response(200, authorized)
        if parts == ["subjects"] and method in ("GET", "POST"):
            permission = "admin:api:subjects:" + ("read" if method == "GET" else "create")
            grant = self._auth.v1(headers, dict(params), body)
            if grant is None or not grant.can(permission):
                return _unauthorized()
            if method == "GET":
                return _json_response(200, self._auth.list_subjects())
            if not isinstance(body, dict):
                return _v1_error(500, "Mongo Error", "subject must be an object")
            try:
                return _json_response(200, self._auth.create_subject(body, store.now_ms()))
            except ValueError as exc:
                return _v1_error(500, "Mongo Error", str(exc))
        return _express_404(method, path)

    # ---------------------------------------------------------------- API v1

    def _v1(
        self,
        store: SiteStore,
        method: str,
        parts: list[str],
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        path: str,
    ) -> _Response:
        if not parts:
            return _express_404(method, path)
        name = parts[0].removesuffix(".json")
        extra = [part.removesuffix(".json") for part in parts[1:]]
        flat = dict(params)
        if name == "verifyauth" and method == "GET" and not extra:
            return self._verifyauth(headers, flat)
        permission = _V1_READ_PERMISSION.get(name)
        if permission is None:
            return _express_404(method, path)
        # every router checks its read permission first (api.use(isPermitted(...)))
        grant = self._auth.v1(headers, flat, body)
        if grant is None or not grant.can(permission):
            return _unauthorized()
        if method == "GET":
            return self._v1_get(store, name, extra, params, flat, grant, path)
        if method == "POST" and not extra and name in _V1_WRITABLE:
            if not grant.can(f"api:{name}:create"):
                return _unauthorized()
            return self._v1_post(store, name, body)
        if method == "DELETE" and len(extra) == 1 and name in _V1_WRITABLE:
            if not grant.can(f"api:{name}:delete"):
                return _unauthorized()
            return self._v1_delete(store, name, extra[0])
        return _express_404(method, path)

    def _v1_get(
        self,
        store: SiteStore,
        name: str,
        extra: list[str],
        params: list[tuple[str, str]],
        flat: dict[str, str],
        grant: _Grant,
        path: str,
    ) -> _Response:
        if name == "status" and not extra:
            return _json_response(200, self._status_v1(store, flat))
        if name == "count":  # lib/api/entries/index.js: /count/:storage/where
            if len(extra) != 2 or extra[1] != "where":
                return _express_404("GET", path)
            return self._v1_count(store, extra[0], params)
        if name == "entries":
            return self._v1_entries(store, extra, params, flat, path)
        if name == "treatments" and not extra:
            return self._v1_list(store, "treatments", params, flat)
        if name == "devicestatus" and not extra:
            return self._v1_list(store, "devicestatus", params, flat)
        if name == "profile":
            return self._v1_profile(store, extra, flat, path)
        if name == "profiles" and not extra:
            return self._v1_list(store, "profile", params, flat)
        if name == "food" and not extra:  # lib/server/food.js list: find({}), stored order
            records = sorted(store.records("food"), key=lambda stored: stored.seq)
            return _Response(200, v1_array(records))
        return _express_404("GET", path)

    def _v1_query(
        self,
        store: SiteStore,
        collection: str,
        params: list[tuple[str, str]],
        *,
        find: Any = None,
        options: QueryOptions | None = None,
    ) -> list[Predicate]:
        tree = qs_tree(params, "find") if find is None else find
        return build_v1_query(
            tree,
            options or V1_QUERY_OPTIONS[collection],
            store.now_ms(),
            INDEX_FIELDS[collection][0],
        )

    def _v1_entries(
        self,
        store: SiteStore,
        extra: list[str],
        params: list[tuple[str, str]],
        flat: dict[str, str],
        path: str,
    ) -> _Response:
        """`lib/api/entries/index.js`: /entries, /entries/current, /entries/<id or type>."""
        count: Any = flat.get("count") or ENTRIES_DEFAULT_COUNT
        find: Any = qs_tree(params, "find")
        if extra == ["current"]:
            find, count = {}, 1  # entries.list({count: 1}): no find at all
        elif len(extra) == 1 and _ENTRY_ID.match(extra[0]):
            stored = store.find_by_oid("entries", extra[0])
            if stored is None:  # getEntry answers [null] with an error: "Mongo Error"
                return _v1_error(500, "Mongo Error", f"No such id: '{extra[0]}'")
            return _Response(200, v1_array([stored]))
        elif len(extra) == 1:  # prepReqModel: find.type = the model
            find = {**(find if isinstance(find, dict) else {}), "type": extra[0]}
        elif extra:
            return _express_404("GET", path)
        try:
            predicates = self._v1_query(store, "entries", params, find=find or {})
        except QueryError as exc:  # entries answer a storage error with 500 "Mongo Error"
            return _v1_error(500, "Mongo Error", {"message": str(exc)})
        query = Query(
            tuple(predicates), "date", descending=True, limit=_limit(count), only_valid=False
        )
        return _Response(200, v1_array(store.select("entries", query)))

    def _v1_list(
        self,
        store: SiteStore,
        collection: str,
        params: list[tuple[str, str]],
        flat: dict[str, str],
    ) -> _Response:
        """treatments (`lib/api/treatments/index.js`), devicestatus, and `/profiles`
        (`lib/api/profile/index.js` query_models → `lib/server/profile.js` list_query)."""
        find = qs_tree(params, "find")
        count: Any = flat.get("count")
        if not count:
            if collection == "treatments":  # a date search wants more by default
                count = 1000 if find is not None else 100
            elif collection == "devicestatus":
                count = DEVICESTATUS_DEFAULT_COUNT
            else:
                count = PROFILES_DEFAULT_COUNT
        try:
            predicates = self._v1_query(store, collection, params, find=find or {})
        except QueryError:
            # the storage call fails; these routes send its (null) result as JSON anyway
            return _Response(200, b"null")
        descending = True
        if collection == "profile":  # list_query honours ?sort[field]=1 (query_sort)
            sort = qs_tree(params, "sort")
            if isinstance(sort, dict) and sort:
                descending = str(next(iter(sort.values()))) != "1"
        query = Query(
            tuple(predicates),
            INDEX_FIELDS[collection][0],
            descending=descending,
            limit=_limit(count),
            only_valid=False,
        )
        return _Response(200, v1_array(store.select(collection, query)))

    def _v1_profile(
        self, store: SiteStore, extra: list[str], flat: dict[str, str], path: str
    ) -> _Response:
        """`GET /api/v1/profile` (`lib/server/profile.js` list: find({}), newest startDate
        first, limit Number(count) or PROFILES_DEFAULT_COUNT) and `/profile/current`."""
        if extra == ["current"]:
            records = store.select(
                "profile", Query((), "startDate", descending=True, limit=1, only_valid=False)
            )
            return _Response(200, records[0].v1_json() if records else b"null")
        if extra:
            return _express_404("GET", path)
        raw = flat.get("count")
        limit: int | None = PROFILES_DEFAULT_COUNT
        if raw:
            number = js_number(raw)
            limit = None if number is None or number == 0 else abs(int(number))
        query = Query((), "startDate", descending=True, limit=limit, only_valid=False)
        return _Response(200, v1_array(store.select("profile", query)))

    def _v1_count(self, store: SiteStore, storage: str, params: list[tuple[str, str]]) -> _Response:
        """`lib/server/aggregate.js`: {$match: query.js(default options)} + {$group: count}."""
        collection = storage if storage in ("entries", "treatments", "devicestatus") else "entries"
        try:
            predicates = self._v1_query(store, collection, params, options=COUNT_QUERY_OPTIONS)
        except QueryError as exc:  # thrown before the aggregate runs: Express's error page
            return _v1_error(500, "Internal Server Error", str(exc))
        count = store.count_matching(collection, predicates)
        return _json_response(200, [{"_id": None, "count": count}] if count else [])

    def _v1_post(self, store: SiteStore, name: str, body: Any) -> _Response:
        """`POST /api/v1/<collection>` (`lib/api/*/index.js` → `lib/server/*.js` create)."""
        docs: list[Any]
        if name == "entries":  # insert_entries: one doc with a `date`, or a list
            if isinstance(body, dict):
                docs = [body] if "date" in body else []
            else:
                docs = list(body) if isinstance(body, list) else []
        else:
            docs = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
        docs = [doc for doc in docs if isinstance(doc, dict)]
        try:
            created = store.v1_create(name, docs)
        except InvalidIdError as exc:
            return _v1_error(400, "Invalid _id format", str(exc))
        except DuplicateKeyError as exc:
            return _v1_error(500, "Mongo Error", str(exc))
        return _json_response(200, created)

    def _v1_delete(self, store: SiteStore, name: str, spec: str) -> _Response:
        """`DELETE /api/v1/<collection>/<_id>`: a permanent delete by `_id`."""
        if name == "profile":  # lib/api/profile/index.js: {} whatever happened
            if not is_object_id(spec):
                return _v1_error(
                    400, "Invalid _id format", f"Must be 24-character hex string. Got: {spec}"
                )
            stored = store.find_by_oid(name, spec)
            if stored is not None:
                store.remove(name, stored)
            return _json_response(200, {})
        if name == "devicestatus" and not is_object_id(spec):
            return _v1_error(
                400, "Invalid _id format", f"Must be 24-character hex string. Got: {spec}"
            )
        stored = store.find_by_oid(name, spec) if is_object_id(spec) else None
        if stored is not None:
            store.remove(name, stored)
        return _json_response(200, {"acknowledged": True, "deletedCount": int(stored is not None)})

    def _verifyauth(self, headers: dict[str, str], flat: dict[str, str]) -> _Response:
        """`lib/api/verifyauth.js`."""
        grant = self._auth.v1(headers, flat)
        can_read = grant is not None and grant.can("*:*:read")
        message = {
            "canRead": can_read,
            "canWrite": grant is not None and grant.can("*:*:write"),
            "isAdmin": grant is not None and grant.can("*:*:admin"),
            "message": "OK"
            if can_read and grant is not None and not grant.defaults
            else "UNAUTHORIZED",
            "rolefound": "FOUND" if grant is not None and grant.subject else "NOTFOUND",
            "permissions": "DEFAULT" if grant is not None and grant.defaults else "ROLE",
        }
        return _json_response(200, {"status": 200, "message": message})

    def _status_v1(self, store: SiteStore, flat: dict[str, str]) -> dict[str, Any]:
        now = store.now_ms()
        auth_token = flat.get("token") or flat.get("secret") or ""
        return {
            "status": "ok",
            "name": "nightscout",
            "version": NIGHTSCOUT_VERSION,
            "serverTime": iso_ms(now),
            "serverTimeEpoch": now,
            "apiEnabled": True,
            "careportalEnabled": True,
            "boluscalcEnabled": True,
            "settings": {
                "units": store.units,
                "timeFormat": 24,
                "dayStart": 7,
                "dayEnd": 21,
                "nightMode": False,
                "customTitle": "Nightscout",
                "theme": "default",
                "language": "en",
                "authDefaultRoles": ",".join(self._auth.default_roles),
                "thresholds": {
                    "bgHigh": 260,
                    "bgTargetTop": 180,
                    "bgTargetBottom": 70,
                    "bgLow": 55,
                },
                "enable": [
                    "careportal",
                    "boluscalc",
                    "iob",
                    "cob",
                    "basal",
                    "rawbg",
                    "pump",
                    "openaps",
                    "loop",
                ],
                "DEFAULT_FEATURES": [
                    "bgnow",
                    "delta",
                    "direction",
                    "timeago",
                    "devicestatus",
                    "upbat",
                    "errorcodes",
                    "profile",
                    "bolus",
                    "dbsize",
                    "runtimestate",
                    "basal",
                    "careportal",
                ],
            },
            "extendedSettings": {"devicestatus": {"advanced": True}},
            # lib/api/status.js: authorization.authorize(token or secret)
            "authorized": self._auth.authorize(auth_token) if auth_token else None,
            "runtimeState": "loaded",
        }

    # ---------------------------------------------------------------- API v3

    def _v3(
        self,
        store: SiteStore,
        method: str,
        parts: list[str],
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
    ) -> _Response:
        flat = dict(params)
        if parts and parts[-1].endswith(".json"):  # renderer.extension2accept
            parts = [*parts[:-1], parts[-1].removesuffix(".json")]
        if method == "GET" and parts == ["version"]:  # lib/api3/specific/version.js: public
            return _Response(200, _wrap(self._version_info(store)))
        route = _v3_route(method, parts)
        if route is None:  # lib/api3/index.js: the final 404, before any auth
            return _error(404, "Bad operation or collection")
        grant = self._auth.v3(headers)
        if isinstance(grant, _Response):
            return grant
        operation, collection, argument = route
        if operation == "status":
            return self._v3_status_info(store, grant)
        if operation == "lastModified":
            return self._v3_last_modified(store, grant)
        if operation == "search":
            return self._v3_search(store, collection, flat, grant)
        if operation == "history":
            return self._v3_history(store, collection, argument, flat, headers, grant)
        if operation == "read":
            return self._v3_read(store, collection, argument or "", flat, headers, grant)
        with store.lock:  # writes: look up and change atomically
            if operation == "create":
                return self._v3_create(store, collection, body, grant)
            if operation == "update":
                return self._v3_update(store, collection, argument or "", body, headers, grant)
            if operation == "patch":
                return self._v3_patch(store, collection, argument or "", body, headers, grant)
            return self._v3_delete(store, collection, argument or "", flat, grant)

    def _version_info(self, store: SiteStore) -> dict[str, Any]:
        return {
            "version": NIGHTSCOUT_VERSION,
            "apiVersion": API3_VERSION,
            "srvDate": store.now_ms(),
            "storage": {"storage": "mongodb", "version": "4.4.29"},
        }

    def _v3_status_info(self, store: SiteStore, grant: _Grant | None) -> _Response:
        """`lib/api3/specific/status.js`: version info and c/r/u/d per collection."""
        info = self._version_info(store)
        permissions: dict[str, str] = {}
        for collection in V3_COLLECTIONS:
            letters = "".join(
                letter
                for letter, action in (
                    ("c", "create"),
                    ("r", "read"),
                    ("u", "update"),
                    ("d", "delete"),
                )
                if grant is not None and grant.can(f"api:{collection}:{action}")
            )
            if letters:
                permissions[collection] = letters
        info["apiPermissions"] = permissions
        return _Response(200, _wrap(info))

    def _v3_last_modified(self, store: SiteStore, grant: _Grant | None) -> _Response:
        """`lib/api3/specific/lastModified.js`."""
        now = store.now_ms()
        collections = {
            name: value
            for name, value in store.last_modified().items()
            if grant is not None and grant.can(f"api:{name}:read")
        }
        return _Response(200, _wrap({"srvDate": now, "collections": collections}))

    def _parse_limit(self, flat: Mapping[str, str]) -> int | _Response:
        """Collection parseLimit (`lib/api3/generic/collection.js`)."""
        raw = flat.get("limit")
        if not raw:
            return self.max_limit
        number = number_in_string(raw)
        if number is None or number <= 0 or number > self.max_limit:
            return _error(400, "Parameter limit out of tolerance")
        return int(number)

    def _demand(self, grant: _Grant | None, permission: str) -> _Response | None:
        """`security.demandPermission`: the 403 to answer, or None."""
        if grant is not None and grant.can(permission):
            return None
        return _error(403, f"Missing permission {permission}")

    def _read_permission(self, collection: str) -> str:
        return f"api:{collection}:admin" if collection == "settings" else f"api:{collection}:read"

    def _v3_search(
        self, store: SiteStore, collection: str, flat: dict[str, str], grant: _Grant | None
    ) -> _Response:
        """`lib/api3/generic/search/operation.js`: valid documents only."""
        refused = self._demand(grant, self._read_permission(collection))
        if refused:
            return refused
        by_field: dict[str, Predicate] = {}
        for key, raw in flat.items():
            if key in V3_RESERVED:
                continue
            field_name, op = key, "eq"
            found = _V3_FILTER_KEY.match(key)
            if found:
                field_name, op = found.group(1), found.group(2)
                if op not in V3_OPERATORS:
                    return _error(400, f"Unsupported filter operator {op}")
            try:
                # utils.js parseFilter builds {field: condition}: a later condition on the
                # same field replaces an earlier one (date$gte=a&date$lt=b keeps only $lt),
                # and onlyValid then sets isValid itself
                by_field[field_name] = _v3_predicate(collection, field_name, op, raw)
            except re.error:
                return _error(500, "Database error")
        by_field.pop("isValid", None)
        predicates = list(by_field.values())
        if flat.get("sort") and flat.get("sort$desc"):
            return _error(400, "Parameters sort and sort_desc cannot be combined")
        limit = self._parse_limit(flat)
        if isinstance(limit, _Response):
            return limit
        skip_raw = flat.get("skip")
        skip = 0
        if skip_raw:
            number = number_in_string(skip_raw)
            if number is None or number < 0:
                return _error(400, "Parameter skip out of tolerance")
            skip = int(number)
        sort_field = flat.get("sort$desc") or flat.get("sort") or None
        query = Query(
            predicates=tuple(predicates),
            sort_field=sort_field,
            descending=bool(flat.get("sort$desc")),
            skip=skip,
            limit=limit,
        )
        docs = store.select(collection, query)
        return _Response(200, _wrap_list(_v3_bodies(docs, flat.get("fields"))))

    def _v3_history(
        self,
        store: SiteStore,
        collection: str,
        param: str | None,
        flat: dict[str, str],
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/history/operation.js`: stored `srvModified` after the cursor."""
        refused = self._demand(grant, self._read_permission(collection))
        if refused:
            return refused
        bad = _error(400, "Bad or missing Last-Modified header/parameter")
        if param is not None:
            since = parse_to_moment_ms(param)
            if since is None:
                return bad
            op = "gt"
        else:
            header = headers.get("last-modified")
            parsed = parse_iso_ms(header) if header else None
            if parsed is None:
                return bad
            since = parsed - parsed % 1000  # floorSeconds
            op = "gte"
        limit = self._parse_limit(flat)
        if isinstance(limit, _Response):
            return limit
        query = Query(
            predicates=(Predicate("srvModified", op, since),),
            sort_field="srvModified",
            limit=limit,
            only_valid=False,
        )
        docs = store.select(collection, query)
        if not docs:
            return _Response(200, _wrap_list([]))
        newest = max(doc.srv_modified or 0 for doc in docs)
        headers_out = {"Last-Modified": http_date(newest), "ETag": f'W/"{newest}"'}
        return _Response(200, _wrap_list(_v3_bodies(docs, flat.get("fields"))), headers_out)

    def _v3_read(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        flat: dict[str, str],
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/read/operation.js`."""
        refused = self._demand(grant, f"api:{collection}:read")
        if refused:
            return refused
        with store.lock:
            stored = store.find_one(collection, identifier)
            if stored is None:
                return _v3_status(404)
            if not stored.is_valid:
                return _v3_status(410)
            body = _v3_bodies([stored], flat.get("fields"))[0]
            modified = stored.v3_modified
        out_headers: dict[str, str] = {}
        if modified is not None:
            out_headers["Last-Modified"] = http_date(modified)
            since = headers.get("if-modified-since")
            since_ms = parse_iso_ms(since) if since else None
            if since_ms is not None and modified - modified % 1000 <= since_ms - since_ms % 1000:
                return _Response(304, b"", out_headers)
        return _Response(200, b'{"status":200,"result":' + body + b"}", out_headers)

    # ---------------------------------------------------------------- API v3 writes

    def _parse_date(self, doc: dict[str, Any]) -> None:
        """Collection parseDate (`lib/api3/generic/collection.js`, created_at fallback on)."""
        if not doc:
            return
        moment = parse_to_moment([doc.get("date"), doc.get("created_at")])
        if moment is None:
            return
        doc["date"] = moment[0]
        if "utcOffset" not in doc:
            doc["utcOffset"] = moment[1]
        doc["created_at"] = iso_ms(moment[0])

    def _v3_create(
        self, store: SiteStore, collection: str, body: Any, grant: _Grant | None
    ) -> _Response:
        """`lib/api3/generic/create/operation.js`: insert, or replace a duplicate."""
        if not body:
            return _error(400, "Bad or missing request body")
        if not isinstance(body, dict):
            return _error(400, "Bad or missing date field")
        doc = dict(body)
        self._parse_date(doc)
        if not doc.get("identifier"):  # resolveIdentifier
            doc["identifier"] = v3_identifier(doc)
        existing = store.v3_identify(collection, doc["identifier"], doc)
        if existing is not None:
            return self._v3_replace(store, collection, doc, existing, grant, deduplication=True)
        return self._v3_insert(store, collection, doc, grant)

    def _v3_insert(
        self, store: SiteStore, collection: str, doc: dict[str, Any], grant: _Grant | None
    ) -> _Response:
        """`lib/api3/generic/create/insert.js`: `srvModified` = `srvCreated` = now."""
        refused = self._demand(grant, f"api:{collection}:create")
        if refused:
            return refused
        identifier = doc.get("identifier")
        if not isinstance(identifier, str) or not identifier.strip():
            return _error(400, "Bad or missing identifier field")
        invalid = _validate_common(doc, patching=False)
        if invalid:
            return invalid
        now = store.next_srv_modified(collection)
        doc["srvModified"] = now
        doc["srvCreated"] = now
        if grant is not None and grant.subject is not None:
            doc["subject"] = grant.subject.name
        raw_id = doc.pop("_id", None)
        store.add(collection, doc, created_by="v3", oid=raw_id if is_object_id(raw_id) else None)
        return _v3_status(
            201,
            identifier=identifier,
            lastModified=now,
        ).with_headers(
            {"Last-Modified": http_date(now), "Location": f"/api/v3/{collection}/{identifier}"}
        )

    def _v3_replace(
        self,
        store: SiteStore,
        collection: str,
        doc: dict[str, Any],
        stored: StoredDoc,
        grant: _Grant | None,
        *,
        deduplication: bool = False,
        storage_doc: dict[str, Any] | None = None,
    ) -> _Response:
        """`lib/api3/generic/update/replace.js`."""
        refused = self._demand(grant, f"api:{collection}:update")
        if refused:
            return refused
        old = storage_doc if storage_doc is not None else _normalized(stored)
        invalid = _validate_update(doc, old, patching=False, deduplication=deduplication)
        if invalid:
            return invalid
        now = store.next_srv_modified(collection)
        doc["srvModified"] = now
        doc["srvCreated"] = old.get("srvCreated") or now
        if grant is not None and grant.subject is not None:
            doc["subject"] = grant.subject.name
        normalize_treatment_duration(doc)
        doc.pop("_id", None)
        store.replace(collection, stored, doc)
        fields: dict[str, Any] = {"lastModified": now}
        if old.get("identifier") != doc.get("identifier") or deduplication:
            fields["identifier"] = doc.get("identifier")
            fields["isDeduplication"] = True
            if old.get("identifier") != doc.get("identifier"):
                fields["deduplicatedIdentifier"] = old.get("identifier")
        return _v3_status(200, **fields).with_headers({"Last-Modified": http_date(now)})

    def _v3_update(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        body: Any,
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/update/operation.js` (PUT): replace, or insert when absent."""
        if not body or not isinstance(body, dict):
            return _error(400, "Bad or missing request body")
        doc = dict(body)
        self._parse_date(doc)
        if not doc.get("identifier"):
            doc["identifier"] = v3_identifier(doc)
        stored = store.v3_identify(collection, identifier)
        doc["identifier"] = identifier
        if stored is None:
            return self._v3_insert(store, collection, doc, grant)
        if not stored.is_valid:
            return _v3_status(410)
        old = _resolved(stored)
        if _unmodified_since_failed(old, headers):
            return _v3_status(412)
        return self._v3_replace(store, collection, doc, stored, grant, storage_doc=old)

    def _v3_patch(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        body: Any,
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/patch/operation.js`: $set the fields and a new `srvModified`
        (also on a v1 upload, which then shows in history); `identifier`, `srvCreated`
        and `isValid` are not added."""
        if not body or not isinstance(body, dict):
            return _error(400, "Bad or missing request body")
        refused = self._demand(grant, f"api:{collection}:update")
        if refused:
            return refused
        stored = store.v3_identify(collection, identifier)
        if stored is None:
            return _v3_status(404)
        if not stored.is_valid:
            return _v3_status(410)
        old = _resolved(stored)
        if _unmodified_since_failed(old, headers):
            return _v3_status(412)
        doc = dict(body)
        invalid = _validate_update(doc, old, patching=True, deduplication=False)
        if invalid:
            return invalid
        now = store.next_srv_modified(collection)
        doc["srvModified"] = now
        if grant is not None and grant.subject is not None:
            doc["modifiedBy"] = grant.subject.name
        normalize_treatment_duration(doc, old)
        store.update_fields(collection, stored, doc)
        return _v3_status(200).with_headers({"Last-Modified": http_date(now)})

    def _v3_delete(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        flat: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/delete/operation.js`: soft unless `?permanent=true`."""
        refused = self._demand(grant, f"api:{collection}:delete")
        if refused:
            return refused
        stored = store.find_one(collection, identifier)
        if stored is None:
            return _v3_status(404)
        if _read_only(stored.doc):
            return _error(422, "Trying to modify read-only document")
        if flat.get("permanent") == "true":
            store.remove(collection, stored)
            return _v3_status(200)
        subject = grant.subject.name if grant is not None and grant.subject is not None else None
        store.delete(collection, identifier, subject=subject)
        return _v3_status(200)

    # ---------------------------------------------------------------- admin

    def _admin(self, method: str, path: str, body: bytes) -> _Response:
        """Unauthenticated control endpoints, so a separately started server can be steered."""
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "body must be JSON")
        parts = [part for part in path.split("/") if part][1:]
        try:
            if parts == ["sites"] and method == "GET":
                return _json_response(200, {"sites": {s: self.site_url(s) for s in self.site_ids}})
            if parts == ["stats"] and method == "GET":
                with self._stats_lock:
                    stats = {
                        "requests": len(self.requests),
                        "max_concurrent_seen": self.max_concurrent_seen,
                        "max_concurrent_by_site": dict(self.max_concurrent_by_site),
                        "pending_faults": self._faults.pending(),
                    }
                return _json_response(200, stats)
            if parts == ["faults"] and method == "POST":
                self.inject(
                    str(payload["kind"]),
                    times=int(payload.get("times", 1)),
                    path_contains=payload.get("path_contains"),
                    delay_seconds=float(payload.get("delay_seconds", 2.0)),
                )
                return _json_response(200, {"status": "ok"})
            if parts == ["faults", "random"] and method == "POST":
                self.set_random_faults(
                    float(payload["rate"]),
                    list(payload.get("kinds", [])),
                    int(payload.get("seed", 0)),
                    delay_seconds=float(payload.get("delay_seconds", 0.5)),
                )
                return _json_response(200, {"status": "ok"})
            if (parts == ["faults"] and method == "DELETE") or parts == ["faults", "clear"]:
                self.clear_faults()
                return _json_response(200, {"status": "ok"})
            if len(parts) == 3 and method == "POST":
                return self._admin_write(parts[0], parts[1], parts[2], payload)
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, f"bad admin request: {exc}")
        return _error(404, "unknown admin endpoint")

    def _admin_write(self, site_id: str, collection: str, action: str, payload: Any) -> _Response:
        store = self.stores.get(site_id)
        if store is None:
            return _error(404, f"no such site: {site_id}")
        if collection not in COLLECTIONS:
            return _error(404, f"no such collection: {collection}")
        if action == "insert":
            api = payload.get("api") if isinstance(payload, dict) else None
            docs = payload.get("docs") if isinstance(payload, dict) else payload
            if isinstance(docs, dict):
                docs = [docs]
            if not isinstance(docs, list):
                return _error(400, 'insert wants a JSON list of documents (or {"docs": [...]})')
            if api is not None and api not in ("v1", "v3"):
                return _error(400, 'api must be "v1" or "v3"')
            result = store.insert(collection, docs, api=api)
            return _json_response(200, {"status": 200, "result": result})
        identifier = str(payload["identifier"])
        doc: dict[str, Any] | None
        try:
            if action == "edit":
                doc = store.edit(
                    collection,
                    identifier,
                    dict(payload.get("changes", {})),
                    unset=payload.get("unset", ()),
                    api=payload.get("api", "v3"),
                )
                return _json_response(200, {"status": 200, "result": doc})
            if action == "delete":
                doc = store.delete(collection, identifier, permanent=bool(payload.get("permanent")))
                return _json_response(200, {"status": 200, "result": doc})
        except KeyError:
            return _error(404, f"no such document: {collection}/{identifier}")
        return _error(404, f"unknown admin action: {action}")


_V1_READ_PERMISSION: Final = {
    # the permission each v1 router demands first (lib/api/index.js routes → routers)
    "entries": "api:entries:read",
    "count": "api:entries:read",  # /count is served by the entries router
    "treatments": "api:treatments:read",
    "devicestatus": "api:devicestatus:read",
    "profile": "api:profile:read",
    "profiles": "api:profile:read",
    "food": "api:food:read",
    "status": "api:status:read",
}
_V1_WRITABLE: Final = frozenset({"entries", "treatments", "devicestatus", "profile"})


# --------------------------------------------------------------------------- request helpers


def _split_site(path: str) -> tuple[str, str]:
    """`/subject-01/api/v1/x` → ("subject-01", "/api/v1/x")."""
    stripped = path.lstrip("/")
    site_id, _, rest = stripped.partition("/")
    return site_id, "/" + rest


def _v3_route(method: str, parts: list[str]) -> tuple[str, str, str | None] | None:
    """(operation, collection, argument) of a v3 route (`lib/api3/generic/collection.js`
    mapRoutes, `lib/api3/index.js`), or None: Express falls through to the v3 404."""
    if method == "GET" and parts == ["lastModified"]:
        return "lastModified", "", None
    if method == "GET" and parts == ["status"]:
        return "status", "", None
    if not parts or parts[0] not in V3_COLLECTIONS:
        return None
    collection, rest = parts[0], parts[1:]
    if method == "GET":
        if not rest:
            return "search", collection, None
        if rest[0] == "history" and len(rest) <= 2:
            return "history", collection, rest[1] if len(rest) == 2 else None
        if len(rest) == 1:
            return "read", collection, rest[0]
    if method == "POST" and not rest:
        return "create", collection, None
    if len(rest) == 1:
        operation = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
        if operation:
            return operation, collection, rest[0]
    return None


def _v3_predicate(collection: str, field_name: str, op: str, raw: str) -> Predicate:
    """A v3 search condition (`lib/api3/generic/search/input.js` parseFilter,
    `lib/api3/storage/mongoCollection/utils.js` parseFilter)."""
    value = _v3_value(field_name, raw)
    if op in ("in", "nin"):
        return Predicate(field_name, op, tuple(js_string(value).split("|")))
    if op == "re":
        return Predicate(field_name, "re", re.compile(js_string(value)))
    index_field, as_time = INDEX_FIELDS[collection]
    if field_name == index_field and as_time and is_canonical_iso(value):
        parsed = parse_iso_ms(value)
        if parsed is not None:  # toISOString() strings order as their instants
            return Predicate(field_name, op, parsed, as_time=True)
    return Predicate(field_name, op, value)


def _v3_bodies(docs: Sequence[StoredDoc], fields: str | None) -> list[bytes]:
    if not fields or fields == "_all":
        return [doc.v3_json() for doc in docs]
    wanted = fields.split(",")
    return [dumps(_project(doc.v3_doc(), wanted)) for doc in docs]


def _normalized(stored: StoredDoc) -> dict[str, Any]:
    """The stored document as v3's storage layer returns it (normalizeDoc)."""
    doc = stored.doc
    if not doc.get("identifier"):
        doc["identifier"] = stored.oid
    return doc


def _resolved(stored: StoredDoc) -> dict[str, Any]:
    """normalizeDoc + resolveDates: what update/patch validate against."""
    return stored.v3_doc()


def _read_only(doc: Mapping[str, Any]) -> bool:
    return any(doc.get(name) is True for name in ("isReadOnly", "readOnly", "readonly"))


def _js_strict_equal(left: Any, right: Any) -> bool:
    """JavaScript's `===` on JSON values (objects and arrays are never equal: identity)."""
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if is_number(left) and is_number(right):
        return bool(left == right)
    return type(left) is type(right) and left == right


_UNDEFINED: Final = object()


def _validate_update(
    doc: Mapping[str, Any], old: Mapping[str, Any], *, patching: bool, deduplication: bool
) -> _Response | None:
    """`lib/api3/generic/update/validate.js`: read-only documents, immutable fields."""
    if _read_only(old):
        return _error(422, "Trying to modify read-only document")
    for name in V3_IMMUTABLE:
        if name == "identifier" and deduplication:
            continue
        if old.get("isValid") is False:
            continue
        if name in doc and not _js_strict_equal(doc[name], old.get(name, _UNDEFINED)):
            return _error(400, f"Field {name} cannot be modified by the client")
    return _validate_common(doc, patching=patching)


def _validate_common(doc: Mapping[str, Any], *, patching: bool) -> _Response | None:
    """`validateCommon` of `lib/api3/shared/operationTools.js`."""
    date = doc.get("date")
    if (not patching or "date" in doc) and (not is_number(date) or date <= MIN_TIMESTAMP):
        return _error(400, "Bad or missing date field")
    offset = doc.get("utcOffset")
    if (not patching or "utcOffset" in doc) and (
        not is_number(offset) or offset < -1440 or offset > 1440
    ):
        return _error(400, "Bad or missing utcOffset field")
    app = doc.get("app")
    if (not patching or "app" in doc) and (not isinstance(app, str) or not app.strip()):
        return _error(400, "Bad or missing app field")
    return None


def _unmodified_since_failed(old: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """If-Unmodified-Since older than the document's (whole-second) modification time."""
    header = headers.get("if-unmodified-since")
    since = parse_iso_ms(header) if header else None
    modified = old.get("srvModified")
    if since is None or not is_number(modified):
        return False
    return bool(modified - modified % 1000 > since - since % 1000)


def _to_mills(value: Any) -> float | None:
    """toMills of `lib/treatmentDuration.js`."""
    if value is None:
        return None
    if is_number(value):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and not value.strip():
        return None
    number = js_number(value)
    if number is not None:
        return float(number)
    parsed = time_value_ms(value) if isinstance(value, str) else None
    return float(parsed) if parsed is not None else None


def normalize_treatment_duration(
    doc: dict[str, Any], fallback: Mapping[str, Any] | None = None
) -> None:
    """`lib/treatmentDuration.js` normalizeTreatmentDuration, which v3 update and patch
    apply to every collection: `endmills` from a duration, then the duration from it."""
    fallback = fallback or {}
    base: float | None = None
    for source, name in (
        (doc, "mills"),
        (fallback, "mills"),
        (doc, "created_at"),
        (doc, "date"),
        (fallback, "created_at"),
        (fallback, "date"),
    ):
        base = _to_mills(source.get(name))
        if base is not None:
            break
    if doc.get("endmills") is None and base is not None:
        if "durationInMilliseconds" in doc:
            span = js_number(doc["durationInMilliseconds"]) or 0
            if span > 0:
                doc["endmills"] = base + span
        elif "duration" in doc:
            doc["endmills"] = base + (js_number(doc["duration"]) or 0) * 60_000
        elif "durationInMilliseconds" in fallback:
            span = js_number(fallback["durationInMilliseconds"]) or 0
            if span > 0:
                doc["endmills"] = base + span
        elif "duration" in fallback:
            doc["endmills"] = base + (js_number(fallback["duration"]) or 0) * 60_000
    end = js_number(doc["endmills"]) if "endmills" in doc else None
    if base is not None and end is not None and end >= base:
        span = end - base
        doc["durationInMilliseconds"] = _js_int(span)
        doc["duration"] = math.floor(span / 60_000 + 0.5)
    if "endmills" in doc and is_number(doc["endmills"]):
        doc["endmills"] = _js_int(doc["endmills"])


def _js_int(value: float | int) -> float | int:
    return int(value) if float(value).is_integer() else value


# --------------------------------------------------------------------------- synthetic data


def synthetic_stores(
    *,
    subjects: int,
    days: int,
    interval_minutes: int = 5,
    seed: int = 0,
    dirty: bool = True,
    end: datetime | None = None,
    clock: Callable[[], int] | None = None,
    uploaded_through: Api = "v1",
) -> dict[str, SiteStore]:
    """One store per synthetic subject, filled by `cascade_dev.fake_nightscout.synthetic`.

    `uploaded_through`: the API the uploaders used ("v1" by default, as xDrip+, Loop and
    AAPS do: the documents carry no server fields and v3 history does not show them).
    """
    from cascade_dev.fake_nightscout import synthetic

    stores: dict[str, SiteStore] = {}
    for spec in synthetic.subject_specs(subjects, seed):
        documents = synthetic.generate_subject(
            spec, days=days, interval_minutes=interval_minutes, seed=seed, end=end, dirty=dirty
        )
        store = SiteStore(
            spec.subject_id,
            clock=clock,
            units=str(getattr(spec, "units", "mg/dl")),
            timezone=str(getattr(spec, "timezone", "UTC")),
            uploaded_through=uploaded_through,
        )
        store.load(documents)
        stores[spec.subject_id] = store
    return stores


def serve(
    port: int = 1337,
    subjects: int = 3,
    days: int = 14,
    interval_minutes: int = 5,
    seed: int = 0,
    api_secret: str | None = None,
    tokens: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    v3_enabled: bool = True,
    fault_rate: float = 0.0,
    fault_kinds: Sequence[str] = ("429", "500", "drop"),
    dirty: bool = True,
    max_limit: int = API3_MAX_LIMIT,
    jwt_lifetime_seconds: int = JWT_LIFETIME_SECONDS,
    uploaded_through: Api = "v1",
    auth_default_roles: str | None = None,
) -> None:
    """Serve synthetic sites until interrupted (`cascade nightscout serve`); prints their URLs.

    Without a token, one readable access token is made and printed: API v3 takes nothing
    but a JWT from a token, even on an open site.
    """
    started = time.perf_counter()
    tokens = list(tokens)
    made_token: str | None = None
    if not tokens and v3_enabled:
        made_token = f"reader-{hashlib.sha1(f'fake-nightscout/{seed}'.encode()).hexdigest()[:16]}"
        tokens = [made_token]
        if auth_default_roles is None and api_secret is None:
            auth_default_roles = "readable"
    server = FakeNightscout.synthetic(
        subjects=subjects,
        days=days,
        interval_minutes=interval_minutes,
        seed=seed,
        dirty=dirty,
        host=host,
        port=port,
        api_secret=api_secret,
        tokens=tokens,
        v3_enabled=v3_enabled,
        max_limit=max_limit,
        jwt_lifetime_seconds=jwt_lifetime_seconds,
        uploaded_through=uploaded_through,
        auth_default_roles=auth_default_roles,
    )
    if fault_rate > 0:
        server.set_random_faults(fault_rate, fault_kinds, seed)
    server.start()
    total = sum(
        store.count(name, include_deleted=True)
        for store in server.stores.values()
        for name in COLLECTIONS
    )
    print(
        f"Fake Nightscout {NIGHTSCOUT_VERSION} serving {len(server.stores)} site(s), "
        f"{total:,} documents uploaded through API {uploaded_through}, at {server.base_url} "
        f"(built in {time.perf_counter() - started:.1f}s)"
    )
    for site_id in server.site_ids:
        print(f"  {site_id}: {server.site_url(site_id)}")
    sites = [{"id": site_id, "url": server.site_url(site_id)} for site_id in server.site_ids]
    print(f"\nNIGHTSCOUT_SITES='{json.dumps(sites)}'")
    if not server.open:
        print('Sites are locked: add "api_secret" (the secret you chose) or "token" to each entry.')
    if made_token is not None:  # never echo a token the caller chose
        print(f'API v3 needs a token even on an open site: add "token": "{made_token}".')
    elif v3_enabled:
        print('API v3 needs a token even on an open site: add "token" to each entry.')
    else:
        print("API v3 is off (an old Nightscout): readers must use API v1.")
    if fault_rate > 0:
        print(f"Failing {fault_rate:.0%} of requests at random with: {', '.join(fault_kinds)}")
    print(
        "Admin: POST /__admin/faults, /__admin/<site>/<collection>/{insert,edit,delete}. Ctrl-C stops."
    )
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
