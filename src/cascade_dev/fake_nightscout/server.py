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

The server is split by concern: `protocol` (constants, response shapes, value parsing),
`v1_query`, `auth`, `faults`, `plumbing` (HTTP), `documents` (v3 routes and document rules)
and this module (the fake itself, its endpoints, `serve`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from cascade_dev.fake_nightscout.auth import _Auth, _Grant
from cascade_dev.fake_nightscout.documents import (
    _normalized,
    _read_only,
    _resolved,
    _split_site,
    _unmodified_since_failed,
    _v3_bodies,
    _v3_predicate,
    _v3_route,
    _validate_common,
    _validate_update,
    normalize_treatment_duration,
)
from cascade_dev.fake_nightscout.faults import _Faults
from cascade_dev.fake_nightscout.plumbing import _Handler, _HTTPServer
from cascade_dev.fake_nightscout.protocol import (
    _ENTRY_ID,
    _V3_FILTER_KEY,
    API3_MAX_LIMIT,
    API3_VERSION,
    DEVICESTATUS_DEFAULT_COUNT,
    ENTRIES_DEFAULT_COUNT,
    JWT_LIFETIME_SECONDS,
    NIGHTSCOUT_VERSION,
    PROFILES_DEFAULT_COUNT,
    V3_COLLECTIONS,
    V3_OPERATORS,
    V3_RESERVED,
    QueryError,
    RequestRecord,
    _error,
    _express_404,
    _json_response,
    _redact_path,
    _redact_query,
    _Response,
    _unauthorized,
    _v1_error,
    _v3_status,
    _wrap,
    _wrap_list,
)
from cascade_dev.fake_nightscout.store import (
    COLLECTIONS,
    INDEX_FIELDS,
    Api,
    DuplicateKeyError,
    InvalidIdError,
    Predicate,
    Query,
    SiteStore,
    StoredDoc,
    http_date,
    is_object_id,
    iso_ms,
    js_number,
    number_in_string,
    parse_iso_ms,
    parse_to_moment,
    parse_to_moment_ms,
    v1_array,
    v3_identifier,
)
from cascade_dev.fake_nightscout.v1_query import (
    COUNT_QUERY_OPTIONS,
    V1_QUERY_OPTIONS,
    QueryOptions,
    _limit,
    build_v1_query,
    qs_tree,
)

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
