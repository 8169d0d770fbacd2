"""A fake Nightscout over real HTTP: several sites, API v1, v2 auth and v3, and faults on demand.

Tests, the demo and benchmarks need a Nightscout that behaves like the real one where a
reader can tell the difference, without Node and MongoDB. Each site (one person) lives
under a path prefix: `http://HOST:PORT/<site_id>/api/v1/...`. Semantics follow
nightscout/cgm-remote-monitor 15 (file names below refer to it):

- v1 reads (`lib/api/entries`, `lib/server/query.js`): newest first, `count` defaults to
  10 (treatments: 100, or 1000 with a `find`), `find[field][$op]=value`, and, as the
  real server does, a query without any condition on the time field only sees the last
  4 days. Soft-deleted documents are hidden (`lib/server/soft-deleted.js`).
- v3 (`lib/api3`): answers wrapped `{"status", "result"}`, `limit` capped at
  `max_limit` (400 beyond), history strictly after the cursor ordered by `srvModified`
  with deletions included, and the cursor must be a real time: like Nightscout's
  `dateTools.parseToMoment`, numbers below 2000-01-01 in ms are read as seconds and a
  cursor still before 2000 (e.g. `history/0`) answers 400.
- auth (`lib/authorization`): an open site reads without credentials; a locked one wants
  `api-secret: sha1(secret)`, `?token=`, or a JWT from `/api/v2/authorization/request/<token>`.

Faults ("slow", "429", "500", "503", "drop", "truncate", "malformed_json") are injected
per request, by count and path, or at random, so retry and backoff code can be tested
against real sockets. Nothing here logs requests or echoes secrets.
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
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt

from cascade.source.fake.store import (
    COLLECTIONS,
    INDEX_FIELDS,
    MIN_TIMESTAMP,
    Predicate,
    Query,
    SiteStore,
    StoredDoc,
    dumps,
    http_date,
    parse_iso_ms,
    v1_array,
)

NIGHTSCOUT_VERSION: Final = "15.0.3"
API3_VERSION: Final = "3.0.4"
FAULT_KINDS: Final = ("slow", "429", "500", "503", "drop", "truncate", "malformed_json")
V1_DEFAULT_WINDOW_MS: Final = 4 * 24 * 3600 * 1000
"""`lib/server/query.js`: a v1 read that names no time condition sees only this far back."""
V1_COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "food")
V3_RESERVED: Final = frozenset({"token", "sort", "sort$desc", "limit", "skip", "fields", "now"})
V3_OPERATORS: Final = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "re"})
V1_OPERATORS: Final = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists"})
V1_INT_FIELDS: Final = {
    "entries": frozenset({"date", "sgv", "filtered", "unfiltered", "rssi", "noise", "mbg"}),
    "treatments": frozenset({"insulin", "carbs", "glucose"}),
}
V1_REGEX_FIELDS: Final = {"treatments": frozenset({"notes", "eventType", "enteredBy"})}
V1_TIME_FIELDS: Final = {
    "treatments": "created_at",
    "devicestatus": "created_at",
    "food": "created_at",
}
REDACTED: Final = "<redacted>"
_SECRET_PARAMS: Final = frozenset({"token", "secret"})
_FIND_KEY = re.compile(r"^find((?:\[[^\]]*\])+)$")
_V3_FILTER_KEY = re.compile(r"^(.*)\$([a-zA-Z]+)$")
_NUMBER = re.compile(r"^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_INT_PREFIX = re.compile(r"^\s*[-+]?\d+")
_REGEX_LITERAL = re.compile(r"^/(.*)/([a-z]*)$", re.DOTALL)
_JSON: Final = "application/json; charset=utf-8"

Headers = Mapping[str, str]


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


@dataclass
class _FaultRule:
    kind: str
    times: int
    path_contains: str | None
    delay_seconds: float


@dataclass(frozen=True)
class _Subject:
    """Who is asking: a role name and whether they may read / administer."""

    name: str
    can_read: bool = True
    is_admin: bool = False


_DEFAULT_READER: Final = _Subject("default")  # AUTH_DEFAULT_ROLES=readable (an open site)
_ADMIN: Final = _Subject("admin", is_admin=True)


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, dumps(payload), headers or {})


def _error(status: int, message: str, **extra: Any) -> _Response:
    """Nightscout's `sendJSONStatus` shape: {"status": code, "message": ...}."""
    return _json_response(status, {"status": status, "message": message, **extra})


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


# --------------------------------------------------------------------------- value parsing


def _parse_int_like_js(text: str) -> float:
    """JavaScript's parseInt: leading integer digits, else NaN (which matches nothing)."""
    found = _INT_PREFIX.match(text)
    return float(int(found.group())) if found else math.nan


def _number(text: str) -> float | int | None:
    """A number written in a string (Nightscout's `isNumberInString`), else None."""
    if not _NUMBER.match(text):
        return None
    number = float(text)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def parse_v3_time(value: str | float) -> int | None:
    """Nightscout's `dateTools.parseToMoment`: ms, or seconds, or ISO/RFC 2822; >= 2000-01-01.

    Numbers that are too small to be ms since 2000 are read as seconds; a result before
    2000-01-01 is not a time (None), which is why `history/0` is a 400.
    """
    number = value if isinstance(value, int | float) else _number(value)
    if number is not None:
        if not math.isfinite(number):
            return None
        ms = int(number)
        if ms < MIN_TIMESTAMP:
            ms = int(number * 1000)
        return ms if ms >= MIN_TIMESTAMP else None
    assert isinstance(value, str)
    parsed = parse_iso_ms(value)
    return parsed if parsed is not None and parsed >= MIN_TIMESTAMP else None


def _v3_value(field_name: str, raw: str) -> Any:
    """`lib/api3/generic/search/input.js` parseValue: numbers, booleans, quotes, dates."""
    value: Any = raw
    number = _number(raw)
    if number is not None:
        value = number
    if value == "true":
        value = True
    elif value == "false":
        value = False
    if isinstance(value, str) and len(value) >= 2 and value.startswith("'") and value.endswith("'"):
        value = value[1:-1]
    if field_name in ("date", "srvModified", "srvCreated") and not isinstance(value, bool):
        parsed = parse_v3_time(value)
        if parsed is not None:
            value = parsed
    return value


def _redact_query(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    return {key: (REDACTED if key in _SECRET_PARAMS else value) for key, value in params}


def _redact_path(path: str) -> str:
    prefix = "/api/v2/authorization/request/"
    return prefix + REDACTED if path.startswith(prefix) else path


def _project(doc: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """v3 `fields=a,b.c`: keep only the named fields (and sub-paths), as `pruneToFields`."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "_id":
            continue
        if key in fields:
            out[key] = value
            continue
        prefix = key + "."
        sub = [name[len(prefix) :] for name in fields if name.startswith(prefix)]
        if sub and isinstance(value, dict):
            out[key] = _project(value, sub)
        elif sub and isinstance(value, list):
            out[key] = [_project(item, sub) if isinstance(item, dict) else item for item in value]
    return out


# --------------------------------------------------------------------------- auth


class _Auth:
    """Nightscout's authorization, reduced to what a reader meets.

    Open (no secret, no tokens): everyone reads (AUTH_DEFAULT_ROLES=readable).
    Locked: `api-secret` header / `?secret=` with the SHA-1 of the secret (admin), access
    tokens (`?token=`, role readable), or a JWT from the token exchange (readable).
    """

    def __init__(
        self,
        api_secret: str | None,
        tokens: Iterable[str],
        lifetime_seconds: int,
        clock: Callable[[], float],
    ) -> None:
        self._secret_sha1 = hashlib.sha1(api_secret.encode()).hexdigest() if api_secret else None
        self._tokens = frozenset(tokens)
        self.open = self._secret_sha1 is None and not self._tokens
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._key = secrets.token_bytes(32)

    def _secret_ok(self, offered: str | None) -> bool:
        if not offered or self._secret_sha1 is None:
            return False
        return hmac.compare_digest(offered.strip().lower().encode(), self._secret_sha1.encode())

    def _token_subject(self, token: str) -> _Subject | None:
        for known in self._tokens:
            if hmac.compare_digest(token.encode(), known.encode()):
                return _Subject(known.rsplit("-", 1)[0] if "-" in known else known)
        return None

    def _jwt_subject(self, token: str) -> _Subject | None:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or self.clock() >= exp:
            return None
        access = claims.get("accessToken")
        return self._token_subject(access) if isinstance(access, str) else None

    def _bearer(self, headers: Headers) -> str | None:
        value = headers.get("authorization") or ""
        if value[:7].lower() == "bearer ":
            return value[7:].strip() or None
        return None

    def v1(self, headers: Headers, params: Mapping[str, str]) -> _Subject | None:
        """The subject of a v1 request, or None (401)."""
        if self.open:
            return _DEFAULT_READER
        if self._secret_ok(headers.get("api-secret")) or self._secret_ok(params.get("secret")):
            return _ADMIN
        token = params.get("token")
        if token:
            return self._token_subject(token) or self._jwt_subject(token)
        bearer = self._bearer(headers)
        return self._jwt_subject(bearer) if bearer else None

    def v3(self, headers: Headers, params: Mapping[str, str]) -> _Subject | _Response:
        """The subject of a v3 request, or the 401 to answer."""
        if self.open:
            return _DEFAULT_READER
        token = self._bearer(headers) or params.get("token")
        if not token:
            return _error(401, "Missing or bad access token or JWT")
        subject = self._token_subject(token) or self._jwt_subject(token)
        if subject is None:
            return _error(401, "Bad access token or JWT")
        return subject

    def exchange(self, access_token: str) -> _Response:
        """`GET /api/v2/authorization/request/<token>`: an access token for a JWT."""
        subject = self._token_subject(access_token)
        if subject is None:
            return _error(401, "Unauthorized", description="Invalid/Missing")
        iat = int(self.clock())
        exp = iat + self.lifetime_seconds
        token = jwt.encode(
            {"accessToken": access_token, "iat": iat, "exp": exp}, self._key, "HS256"
        )
        return _json_response(
            200,
            {
                "token": token,
                "sub": subject.name,
                "permissionGroups": [["*:*:read"]],
                "iat": iat,
                "exp": exp,
            },
        )


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
    daemon_threads = True
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
    """

    def __init__(
        self,
        stores: Mapping[str, SiteStore],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_secret: str | None = None,
        tokens: Iterable[str] = (),
        jwt_lifetime_seconds: int = 3600,
        max_limit: int = 1000,
        v3_enabled: bool = True,
        auth_clock: Callable[[], float] | None = None,
    ) -> None:
        """`auth_clock` (epoch seconds) drives JWT issue and expiry; tests pass a fake one."""
        self.stores: dict[str, SiteStore] = dict(stores)
        self.host = host
        self.port = port
        self.max_limit = max_limit
        self.v3_enabled = v3_enabled
        self._auth = _Auth(api_secret, tokens, jwt_lifetime_seconds, auth_clock or time.time)
        self._faults = _Faults()
        self._stats_lock = threading.Lock()
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
        **kw: Any,
    ) -> FakeNightscout:
        """Sites filled by `cascade.source.fake.synthetic`, one per subject ("subject-01", ...)."""
        return cls(
            synthetic_stores(
                subjects=subjects,
                days=days,
                interval_minutes=interval_minutes,
                seed=seed,
                dirty=dirty,
                end=end,
                clock=clock,
            ),
            **kw,
        )

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
        httpd.server_close()
        with self._stats_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
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
            if add:
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

    def _leave(self, site_id: str | None, record: RequestRecord) -> None:
        with self._stats_lock:
            self._in_flight -= 1
            if site_id is not None:
                self._in_flight_by_site[site_id] -= 1
            self.requests.append(record)

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
        status = 0
        try:
            if kind == "drop":
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
                response = self._route_safely(method, site, site_id, rest, params, headers)
            if kind == "malformed_json":
                response = _Response(200, response.body[: max(1, len(response.body) // 2)])
            status = response.status
            handler.send(response, truncate_body=kind == "truncate")
        finally:
            self._leave(
                site,
                RequestRecord(
                    method=method,
                    site_id=site,
                    path=_redact_path(rest if site else path),
                    query=_redact_query(params),
                    status=status,
                    fault=kind,
                    duration_seconds=time.perf_counter() - started,
                ),
            )

    def _route_safely(
        self,
        method: str,
        site: str | None,
        site_id: str,
        rest: str,
        params: list[tuple[str, str]],
        headers: dict[str, str],
    ) -> _Response:
        try:
            if site is None:
                if site_id == "":
                    return _json_response(200, {"sites": self.site_ids})
                return _error(404, f"no such site: {site_id}")
            if method != "GET":
                return _error(405, "Method Not Allowed (this fake is read-only; use /__admin)")
            return self._route(self.stores[site], rest, params, headers)
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
        path: str,
        params: list[tuple[str, str]],
        headers: dict[str, str],
    ) -> _Response:
        flat = dict(params)
        parts = [part for part in path.split("/") if part]
        if len(parts) >= 2 and parts[0] == "api":
            version, rest = parts[1], parts[2:]
            if version == "v1":
                return self._v1(store, rest, params, flat, headers, path)
            if version == "v2" and rest[:2] == ["authorization", "request"] and len(rest) == 3:
                return self._auth.exchange(rest[2])
            if version == "v3":
                if not self.v3_enabled:
                    return _express_404("GET", path)
                return self._v3(store, rest, flat, headers)
        return _express_404("GET", path)

    # ---------------------------------------------------------------- API v1

    def _v1(
        self,
        store: SiteStore,
        parts: list[str],
        params: list[tuple[str, str]],
        flat: dict[str, str],
        headers: dict[str, str],
        path: str,
    ) -> _Response:
        if not parts:
            return _express_404("GET", path)
        name = parts[0].removesuffix(".json")
        extra = [part.removesuffix(".json") for part in parts[1:]]
        if name == "verifyauth":
            return self._verifyauth(headers, flat)
        subject = self._auth.v1(headers, flat)
        if subject is None:
            return _error(401, "Unauthorized", description="Invalid/Missing")
        if name == "status":
            return _json_response(200, self._status_v1(store, subject))
        if name not in V1_COLLECTIONS:
            return _express_404("GET", path)
        try:
            query = _v1_query(store, name, extra, params, flat)
        except ValueError as exc:
            return _error(400, str(exc))
        if query is None:
            return _express_404("GET", path)
        return _Response(200, v1_array(store.select(name, query)))

    def _verifyauth(self, headers: dict[str, str], flat: dict[str, str]) -> _Response:
        subject = self._auth.v1(headers, flat)
        authorized = subject is not None and subject is not _DEFAULT_READER
        message = {
            "canRead": subject is not None,
            "canWrite": bool(subject and subject.is_admin),
            "isAdmin": bool(subject and subject.is_admin),
            "message": "OK" if authorized else "UNAUTHORIZED",
            "rolefound": "FOUND" if authorized else "NOTFOUND",
            "permissions": "ROLE" if authorized else "DEFAULT",
        }
        return _json_response(200, {"status": 200, "message": message})

    def _status_v1(self, store: SiteStore, subject: _Subject) -> dict[str, Any]:
        now = store.now_ms()
        return {
            "status": "ok",
            "name": "nightscout",
            "version": NIGHTSCOUT_VERSION,
            "serverTime": _iso(now),
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
                "authDefaultRoles": "readable" if self._auth.open else "denied",
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
            "authorized": None if subject is _DEFAULT_READER else {"sub": subject.name},
            "runtimeState": "loaded",
        }

    # ---------------------------------------------------------------- API v3

    def _v3(
        self, store: SiteStore, parts: list[str], flat: dict[str, str], headers: dict[str, str]
    ) -> _Response:
        if parts == ["version"]:
            return _Response(200, _wrap(self._version_info(store)))
        subject = self._auth.v3(headers, flat)
        if isinstance(subject, _Response):
            return subject
        if parts == ["status"]:
            info = self._version_info(store)
            info["apiPermissions"] = {
                name: "r" for name in COLLECTIONS if name != "settings" or subject.is_admin
            }
            return _Response(200, _wrap(info))
        if parts == ["lastModified"]:
            now = store.now_ms()
            result = {
                "srvDate": now,
                "srvDateString": _iso(now),
                "collections": store.last_modified(),
            }
            return _Response(200, _wrap(result))
        if not parts or parts[0] not in COLLECTIONS:
            return _error(404, "Bad operation or collection")
        collection = parts[0]
        if collection == "settings" and not subject.is_admin:
            return _error(403, "Missing permission api:settings:admin")
        if len(parts) == 1:
            return self._v3_search(store, collection, flat)
        if parts[1] == "history" and len(parts) <= 3:
            return self._v3_history(
                store, collection, parts[2] if len(parts) == 3 else None, flat, headers
            )
        if len(parts) == 2:
            return self._v3_read(store, collection, parts[1], flat)
        return _error(404, "Bad operation or collection")

    def _version_info(self, store: SiteStore) -> dict[str, Any]:
        return {
            "version": NIGHTSCOUT_VERSION,
            "apiVersion": API3_VERSION,
            "srvDate": store.now_ms(),
            "storage": {"storage": "mongodb", "version": "4.4.29"},
        }

    def _parse_limit(self, flat: Mapping[str, str]) -> int | _Response:
        raw = flat.get("limit")
        if not raw:
            return self.max_limit
        number = _number(raw)
        if number is None or number <= 0 or number > self.max_limit:
            return _error(400, "Parameter limit out of tolerance")
        return int(number)

    def _v3_search(self, store: SiteStore, collection: str, flat: dict[str, str]) -> _Response:
        limit = self._parse_limit(flat)
        if isinstance(limit, _Response):
            return limit
        skip_raw = flat.get("skip")
        skip = 0
        if skip_raw:
            number = _number(skip_raw)
            if number is None or number < 0:
                return _error(400, "Parameter skip out of tolerance")
            skip = int(number)
        if flat.get("sort") and flat.get("sort$desc"):
            return _error(400, "Parameters sort and sort_desc cannot be combined")
        sort_field = flat.get("sort$desc") or flat.get("sort") or None
        predicates: list[Predicate] = []
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
                predicates.append(_v3_predicate(field_name, op, raw))
            except re.error:
                return _error(400, f"Bad regular expression for {field_name}")
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
    ) -> _Response:
        limit = self._parse_limit(flat)
        if isinstance(limit, _Response):
            return limit
        bad = _error(400, "Bad or missing Last-Modified header/parameter")
        if param is not None:
            since = parse_v3_time(param)
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
        query = Query(
            predicates=(Predicate("srvModified", op, since),),
            sort_field="srvModified",
            limit=limit,
            only_valid=False,
        )
        docs = store.select(collection, query)
        if not docs:
            return _Response(200, _wrap_list([]))
        newest = max(doc.srv_modified for doc in docs)
        headers_out = {"Last-Modified": http_date(newest), "ETag": f'W/"{newest}"'}
        return _Response(200, _wrap_list(_v3_bodies(docs, flat.get("fields"))), headers_out)

    def _v3_read(
        self, store: SiteStore, collection: str, identifier: str, flat: dict[str, str]
    ) -> _Response:
        with store.lock:
            stored = store.find_one(collection, identifier)
            if stored is None:
                return _error(404, "Not found")
            if not stored.is_valid:
                return _error(410, "Gone")
            body = _v3_bodies([stored], flat.get("fields"))[0]
            modified = stored.srv_modified
        return _Response(
            200, b'{"status":200,"result":' + body + b"}", {"Last-Modified": http_date(modified)}
        )

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
            docs = payload.get("docs") if isinstance(payload, dict) else payload
            if isinstance(docs, dict):
                docs = [docs]
            if not isinstance(docs, list):
                return _error(400, 'insert wants a JSON list of documents (or {"docs": [...]})')
            return _json_response(200, {"status": 200, "result": store.insert(collection, docs)})
        identifier = str(payload["identifier"])
        doc: dict[str, Any] | None
        try:
            if action == "edit":
                doc = store.edit(
                    collection,
                    identifier,
                    dict(payload.get("changes", {})),
                    unset=payload.get("unset", ()),
                )
                return _json_response(200, {"status": 200, "result": doc})
            if action == "delete":
                doc = store.delete(collection, identifier, permanent=bool(payload.get("permanent")))
                return _json_response(200, {"status": 200, "result": doc})
        except KeyError:
            return _error(404, f"no such document: {collection}/{identifier}")
        return _error(404, f"unknown admin action: {action}")


# --------------------------------------------------------------------------- request helpers


def _split_site(path: str) -> tuple[str, str]:
    """`/subject-01/api/v1/x` → ("subject-01", "/api/v1/x")."""
    stripped = path.lstrip("/")
    site_id, _, rest = stripped.partition("/")
    return site_id, "/" + rest


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _v3_predicate(field_name: str, op: str, raw: str) -> Predicate:
    if op in ("in", "nin"):
        return Predicate(field_name, op, tuple(raw.split("|")))
    if op == "re":
        return Predicate(field_name, "re", re.compile(raw))
    if field_name == "created_at":
        # Nightscout normalises the value to an ISO string and MongoDB compares strings;
        # stored created_at strings are UTC ISO, so comparing as times is the same thing.
        parsed = parse_v3_time(raw)
        if parsed is not None:
            return Predicate(field_name, op, parsed, as_time=True)
    return Predicate(field_name, op, _v3_value(field_name, raw))


def _v3_bodies(docs: Sequence[StoredDoc], fields: str | None) -> list[bytes]:
    if not fields or fields == "_all":
        return [doc.body for doc in docs]
    wanted = [name for name in fields.split(",") if name]
    return [dumps(_project(doc.doc, wanted)) for doc in docs]


def _v1_query(
    store: SiteStore,
    collection: str,
    extra: list[str],
    params: list[tuple[str, str]],
    flat: dict[str, str],
) -> Query | None:
    """Translate a v1 request (path spec and `find`/`count`) into a store query.

    None means "no such route". Follows `lib/server/query.js`: typed fields are parsed
    with parseInt, regex fields accept `/pattern/flags`, the time field of treatments and
    devicestatus compares ISO strings as times, and a query with no condition on the time
    field only sees the last 4 days.
    """
    find: dict[str, dict[str, Any]] = {}
    for key, value in params:
        found = _FIND_KEY.match(key)
        if not found:
            continue
        segments = found.group(1)[1:-1].split("][")
        field_name = segments[0]
        op = segments[1] if len(segments) > 1 else "$eq"
        if not op.startswith("$") or op[1:] not in V1_OPERATORS:
            raise ValueError(f"Unsupported query operator {op}")
        ops = find.setdefault(field_name, {})
        if op in ("$in", "$nin"):
            ops.setdefault(op[1:], []).append(value)
        else:
            ops[op[1:]] = value

    if collection == "entries" and extra:
        if extra[0] == "current" and len(extra) == 1:
            flat = {**flat, "count": "1"}
        elif re.fullmatch(r"[0-9a-f]{24}", extra[0]) and len(extra) == 1:
            find = {"_id": {"eq": extra[0]}}
        elif len(extra) == 1:
            find["type"] = {"eq": extra[0]}
        else:
            return None
    elif extra:
        return None

    predicates: list[Predicate] = []
    int_fields = V1_INT_FIELDS.get(collection, frozenset())
    regex_fields = V1_REGEX_FIELDS.get(collection, frozenset())
    time_field = V1_TIME_FIELDS.get(collection)
    for field_name, ops in find.items():
        for op, value in ops.items():
            predicates.append(
                _v1_predicate(field_name, op, value, int_fields, regex_fields, time_field)
            )

    index_field, _ = INDEX_FIELDS[collection]
    windowed = collection in ("entries", "treatments", "devicestatus")
    named_time = index_field in find or (collection == "entries" and "dateString" in find)
    if windowed and not named_time and "_id" not in find:
        since = store.now_ms() - V1_DEFAULT_WINDOW_MS
        predicates.append(Predicate(index_field, "gte", since, as_time=collection != "entries"))
    if "isValid" not in find:
        predicates.append(Predicate("isValid", "ne", False))

    count_raw = flat.get("count")
    if not count_raw:
        if collection in ("entries", "devicestatus"):
            limit: int | None = 10
        elif collection == "treatments":
            limit = 1000 if find else 100
        else:
            limit = None
    else:
        limit = (
            int(count_raw) if re.fullmatch(r"\s*\d+\s*", count_raw) and int(count_raw) > 0 else None
        )

    return Query(
        predicates=tuple(predicates),
        sort_field=index_field,
        descending=True,
        limit=limit,
        only_valid=False,  # the isValid predicate above does it, unless `find` names isValid
    )


def _v1_predicate(
    field_name: str,
    op: str,
    value: Any,
    int_fields: frozenset[str],
    regex_fields: frozenset[str],
    time_field: str | None,
) -> Predicate:
    if isinstance(value, list):
        items = [_v1_scalar(field_name, item, int_fields) for item in value]
        return Predicate(field_name, op, tuple(items))
    if op == "exists":
        return Predicate(field_name, "exists", value not in ("false", "0", ""))
    if field_name == time_field:
        parsed = parse_iso_ms(value.replace(" ", "+")) if _number(value) is None else None
        if parsed is not None:
            return Predicate(field_name, op, parsed, as_time=True)
        return Predicate(field_name, op, value)
    if field_name in regex_fields:
        literal = _REGEX_LITERAL.match(value)
        if literal:
            flags = re.IGNORECASE if "i" in literal.group(2) else 0
            pattern = re.compile(literal.group(1), flags)
            return Predicate(field_name, "re" if op == "eq" else op, pattern)
    return Predicate(field_name, op, _v1_scalar(field_name, value, int_fields))


def _v1_scalar(field_name: str, value: str, int_fields: frozenset[str]) -> Any:
    if field_name in int_fields:
        return _parse_int_like_js(value)
    if field_name == "isValid" and value in ("true", "false"):
        return value == "true"
    return value


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
) -> dict[str, SiteStore]:
    """One store per synthetic subject, filled by `cascade.source.fake.synthetic`."""
    from cascade.source.fake import synthetic

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
    max_limit: int = 1000,
    jwt_lifetime_seconds: int = 3600,
) -> None:
    """Serve synthetic sites until interrupted (`cascade nightscout serve`); prints their URLs."""
    started = time.perf_counter()
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
    )
    if fault_rate > 0:
        server.set_random_faults(fault_rate, fault_kinds, seed)
    server.start()
    total = sum(store.count(name) for store in server.stores.values() for name in COLLECTIONS)
    print(
        f"Fake Nightscout {NIGHTSCOUT_VERSION} serving {len(server.stores)} site(s), "
        f"{total:,} documents, at {server.base_url} (built in {time.perf_counter() - started:.1f}s)"
    )
    for site_id in server.site_ids:
        print(f"  {site_id}: {server.site_url(site_id)}")
    sites = [{"id": site_id, "url": server.site_url(site_id)} for site_id in server.site_ids]
    print(f"\nNIGHTSCOUT_SITES='{json.dumps(sites)}'")
    if api_secret or tokens:
        print('Sites are locked: add "api_secret" (the secret you chose) or "token" to each entry.')
    if not v3_enabled:
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
