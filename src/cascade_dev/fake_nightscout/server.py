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
`plumbing` (HTTP), `auth`, `faults`, `api_v1` (v1 and v2 routes, with `v1_query`),
`api_v3` (with `documents`, its routes and document rules), `admin` (`/__admin`), and this
module: the fake itself (lifecycle, routing, request log), `synthetic_stores` and `serve`.
The sites' data lives in `store` (see its docstring for its own modules).
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
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cascade_dev.fake_nightscout.admin import admin
from cascade_dev.fake_nightscout.api_v1 import V1Api
from cascade_dev.fake_nightscout.api_v3 import V3Api
from cascade_dev.fake_nightscout.auth import _Auth
from cascade_dev.fake_nightscout.documents import (
    _split_site,
)
from cascade_dev.fake_nightscout.faults import _Faults
from cascade_dev.fake_nightscout.plumbing import _Handler, _HTTPServer
from cascade_dev.fake_nightscout.protocol import (
    API3_MAX_LIMIT,
    JWT_LIFETIME_SECONDS,
    NIGHTSCOUT_VERSION,
    RequestRecord,
    _error,
    _express_404,
    _json_response,
    _redact_path,
    _redact_query,
    _Response,
    _v1_error,
)
from cascade_dev.fake_nightscout.schema import COLLECTIONS, Api
from cascade_dev.fake_nightscout.store import SiteStore

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
        self._api_v1 = V1Api(self._auth)
        self._api_v3 = V3Api(self._auth, max_limit)
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

    @property
    def max_limit(self) -> int:
        """API3_MAX_LIMIT: the largest page API v3 serves (and its default `limit`)."""
        return self._api_v3.max_limit

    @max_limit.setter
    def max_limit(self, value: int) -> None:
        self._api_v3.max_limit = value

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

    def stats(self) -> dict[str, Any]:
        """Request count, concurrency peaks and faults still pending (`GET /__admin/stats`)."""
        with self._stats_lock:
            return {
                "requests": len(self.requests),
                "max_concurrent_seen": self.max_concurrent_seen,
                "max_concurrent_by_site": dict(self.max_concurrent_by_site),
                "pending_faults": self._faults.pending(),
            }

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
            handler.send(admin(self, method, path, body))
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
                return self._api_v1.handle(store, method, rest, params, headers, body, path)
            if version == "v2":  # lib/api2/index.js: authorization, and v1 mounted again
                if rest[:1] == ["authorization"]:
                    return self._api_v1.authorization(
                        store, method, rest[1:], params, headers, body, path
                    )
                return self._api_v1.handle(store, method, rest, params, headers, body, path)
            if version == "v3":
                if not self.v3_enabled:
                    return _express_404(method, path)
                return self._api_v3.handle(store, method, rest, params, headers, body)
        return _express_404(method, path)


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
