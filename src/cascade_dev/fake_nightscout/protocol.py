"""What Nightscout 15 answers with: its version constants and limits, response shapes and
errors, and how it parses values (JavaScript's parseInt, v3 times, regexes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cascade_dev.fake_nightscout.records import dumps
from cascade_dev.fake_nightscout.values import (
    iso_ms,
    js_string,
    number_in_string,
    parse_to_moment,
    parse_to_moment_ms,
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
