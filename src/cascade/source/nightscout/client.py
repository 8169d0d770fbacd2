"""An HTTP client for one Nightscout site: API v1 and v3, auth, bounded paging, retries.

Paging rules that keep every record exactly once:
- v3 history is ordered by `srvModified` and filters *strictly greater than* the path
  parameter, so a page cut between two documents with the same `srvModified` would skip the
  rest if we asked for "after the last one". We ask for "at or after the last one" instead
  (`last - 1`) and drop the documents already seen at that boundary.
- v1 answers newest first. We page backwards with `$lte` the oldest time seen and drop the
  records already seen at that time, for the same reason.
If more records share one time than a page holds, no progress is possible without skipping:
we grow the page up to the server's cap and otherwise stop with a `PagingError`.

What each API can see (Nightscout 15, `lib/api` and `lib/api3`):
- v1 sees every document, whatever API uploaded it, and soft-deleted ones with `isValid: false`;
  it reads anonymously on an open site. It cannot tell an edit made after we read.
- v3 history filters on `srvModified`, which only documents created or changed through v3
  carry: a document uploaded through v1 (xDrip+, Loop, most uploaders) never appears there.
  v3 accepts nothing but a JWT, even on an open site, so it needs an access token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from cascade import __version__
from cascade.config import SiteConfig
from cascade.exceptions import (
    NightscoutAuthError,
    NightscoutError,
    NightscoutUnavailableError,
    PagingError,
)
from cascade.source.nightscout.collections import Collection

Api = Literal["v1", "v3"]
JWT_RENEW_MARGIN_SECONDS = 60.0
MAX_PAGE_GROWTH = 8
# Nightscout's API3 MIN_TIMESTAMP (2000-01-01): history refuses an older lastModified with a 400.
HISTORY_START_MS = 946_684_800_000
# v1 reads need a condition on the time field (without one Nightscout looks back only 4 days).
# The epoch, not 2000: documents from a clock stuck in 1970 must be read to be rejected.
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PROFILE_COUNT = 1_000_000


_TOKEN_IN_PATH = re.compile(r"(/api/v2/authorization/request/)[^\s\"'?]+")


class _RedactTokenPaths(logging.Filter):
    """httpx logs every request URL; the token exchange carries the access token in its path."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/authorization/request/" in message:
            record.msg, record.args = _TOKEN_IN_PATH.sub(r"\1<redacted>", message), None
        return True


# Not logging configuration (no level, handler or format: that is the CLI's) but a safeguard that
# goes wherever a token can be sent: installed by each client, not at import. addFilter adds one
# filter object only once, so every client shares this one.
_REDACT_TOKEN_PATHS = _RedactTokenPaths()


@dataclass(frozen=True)
class Page:
    """One answer from the server: the new documents in it and the body exactly as received."""

    collection: str
    api: Api
    docs: list[dict[str, Any]]
    body: bytes
    # v3 history: greatest srvModified in the page. v1: oldest event time in the page (raw value).
    boundary: int | str | None = None


class _TransientError(Exception):
    """A failure worth retrying: 429, 5xx, or a body that is not the JSON the server promised."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class V3Access:
    """Whether the v3 history feed can be read on a site, and why (shown by `cascade doctor`)."""

    usable: bool
    reason: str


class ApiNotFoundError(NightscoutError):
    """The site answered 404 where a Nightscout API should be."""

    def __init__(self, site: SiteConfig, path: str) -> None:
        super().__init__(
            f"no Nightscout API at {site.url} (HTTP 404 for {path}): check NIGHTSCOUT_URL / "
            f"the url of site {site.id!r}"
        )
        self.path = path


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TransientError | httpx.TimeoutException | httpx.TransportError)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _TransientError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"connection failed ({type(exc).__name__})"


def iso_ms(moment: datetime) -> str:
    """Nightscout's own ISO format: UTC, milliseconds, `Z`. Sorts as text the same as in time."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _time_param(collection: Collection, moment: datetime | int | str) -> str:
    if isinstance(moment, datetime):
        if collection.time_format == "epoch_ms":
            return str(int(moment.timestamp() * 1000))
        return iso_ms(moment)
    return str(moment)


@dataclass
class _Jwt:
    token: str
    expires_at: float  # epoch seconds
    issued_at: float

    def fresh(self, now: float) -> bool:
        lifetime = self.expires_at - self.issued_at
        margin = min(JWT_RENEW_MARGIN_SECONDS, lifetime / 5)
        return now < self.expires_at - margin


class NightscoutClient:
    """Reads one Nightscout site. Thread-safe: requests are bounded by a per-site semaphore."""

    def __init__(
        self,
        site: SiteConfig,
        *,
        page_size: int = 1000,
        timeout_seconds: float = 30.0,
        max_retries: int = 6,
        backoff_seconds: float = 0.5,
        concurrency: int = 2,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.site = site
        self._clock = clock  # epoch seconds: when a JWT is due for renewal
        self._sleep = sleep  # how a retry waits out its backoff (tests pass a fake)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).addFilter(_REDACT_TOKEN_PATHS)
        self.page_size = page_size
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self._slots = threading.Semaphore(concurrency)
        self._jwt: _Jwt | None = None
        self._jwt_lock = threading.Lock()
        self._v3: V3Access | None = None
        self._http = httpx.Client(
            base_url=site.url,
            timeout=httpx.Timeout(timeout_seconds),
            headers={"Accept": "application/json", "User-Agent": f"cascade/{__version__}"},
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
            follow_redirects=False,
        )
        self._secret_hash = (
            hashlib.sha1(site.api_secret.get_secret_value().encode()).hexdigest()
            if site.api_secret
            else None
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NightscoutClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- auth -------------------------------------------------------------------------------

    def _bearer(self, *, renew: bool = False) -> str | None:
        if self.site.token is None:
            return None
        with self._jwt_lock:
            if renew or self._jwt is None or not self._jwt.fresh(self._clock()):
                self._jwt = self._exchange_token()
            return self._jwt.token

    def _exchange_token(self) -> _Jwt:
        assert self.site.token is not None
        path = f"/api/v2/authorization/request/{self.site.token.get_secret_value()}"
        response = self._send(path, {}, headers={}, label="/api/v2/authorization/request/<token>")
        if response.status_code in (401, 403):
            raise self._auth_error(response.status_code, "the access token was refused")
        payload = self._decode(response, "/api/v2/authorization/request/<token>")
        token = payload.get("token") if isinstance(payload, dict) else None
        expires = payload.get("exp") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token or not (expires is None or _is_number(expires)):
            raise UnexpectedReplyError(
                f"site {self.site.id!r}: the token exchange (/api/v2/authorization/request) "
                "answered without a JWT and its expiry; is the URL a Nightscout site?"
            )
        now = self._clock()
        return _Jwt(token=token, expires_at=float(expires or now + 3600), issued_at=now)

    def _auth_headers(self, *, renew: bool = False) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._secret_hash:
            headers["api-secret"] = self._secret_hash
        bearer = self._bearer(renew=renew)
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return headers

    def _auth_error(self, status: int, detail: str) -> NightscoutAuthError:
        hint = (
            "check the api_secret / token configured for it"
            if (self.site.api_secret or self.site.token)
            else "the site is locked: configure an api_secret or a read token for it"
        )
        return NightscoutAuthError(
            f"Nightscout site {self.site.id!r} ({self.site.url}) refused access "
            f"(HTTP {status}, {detail}): {hint}"
        )

    # ---- transport --------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.backoff_seconds, max=30.0, jitter=self.backoff_seconds
        )
        delay = backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _TransientError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    def _send(
        self, path: str, params: dict[str, str], *, headers: dict[str, str], label: str
    ) -> httpx.Response:
        """One GET with retries on transient failures. `label` is the path as it may be shown."""

        def attempt() -> httpx.Response:
            with self._slots:
                response = self._http.get(path, params=params, headers=headers)
            if response.status_code == 429 or response.status_code >= 500:
                raise _TransientError(f"HTTP {response.status_code}", _retry_after(response))
            return response

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_is_transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (_TransientError, httpx.TimeoutException, httpx.TransportError) as exc:
            raise NightscoutUnavailableError(
                f"Nightscout site {self.site.id!r}: GET {label} failed after "
                f"{self.max_retries + 1} attempts, last: {_describe(exc)}"
            ) from None

    def _decode(self, response: httpx.Response, label: str) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            try:  # orjson refuses integers beyond 64 bits, which the json module reads
                return json.loads(response.content)
            except ValueError:
                raise _TransientError(f"{label} answered with malformed JSON") from None
            except RecursionError:
                raise NightscoutUnavailableError(
                    f"Nightscout site {self.site.id!r}: {label} answered JSON nested too deeply "
                    "to read"
                ) from None

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> tuple[Any, bytes]:
        """GET a JSON document with auth, retrying transient failures and renewing an expired JWT."""
        params = params or {}
        renewed = False
        for _ in range(self.max_retries + 1):
            response = self._send(path, params, headers=self._auth_headers(renew=False), label=path)
            if response.status_code == 401 and self.site.token is not None and not renewed:
                self._auth_headers(renew=True)
                renewed = True
                continue
            if response.status_code in (401, 403):
                raise self._auth_error(response.status_code, f"GET {path}")
            if response.status_code == 404:
                raise ApiNotFoundError(self.site, path)
            if response.is_redirect:
                where = response.headers.get("Location", "?").split("?")[0]
                raise NightscoutUnavailableError(
                    f"Nightscout site {self.site.id!r}: GET {path} was redirected "
                    f"(HTTP {response.status_code} to {where}): set the site's url to where "
                    "Nightscout answers, not a redirect"
                )
            if response.status_code >= 400:
                raise NightscoutUnavailableError(
                    f"Nightscout site {self.site.id!r}: GET {path} answered HTTP {response.status_code}: "
                    f"{response.text[:200]}"
                )
            try:
                return self._decode(response, path), response.content
            except _TransientError:
                continue  # a truncated body: ask again
        raise NightscoutUnavailableError(
            f"Nightscout site {self.site.id!r}: GET {path} kept answering malformed JSON"
        )

    # ---- discovery --------------------------------------------------------------------------

    def v3_access(self) -> V3Access:
        """Whether this site's v3 history feed can be read with the configured credentials."""
        if self._v3 is None:
            self._v3 = self._probe_v3()
        return self._v3

    def _probe_v3(self) -> V3Access:
        if self.site.token is None:
            reason = "v3 accepts only a JWT from an access token, even on an open site"
            return V3Access(False, f"no token configured ({reason})")
        try:
            self._get_json("/api/v3/version")
        except ApiNotFoundError:
            return V3Access(False, "the server has no API v3 (Nightscout before 14)")
        self._get_json("/api/v3/lastModified")  # a refused token raises, naming the site
        return V3Access(True, "the token is accepted by v3")

    def count(self, collection: Collection) -> int | None:
        """How many documents v1 holds for the collection (`/api/v1/count`), or None if unknown.

        The same time condition as `v1_pages` with no bounds, so both see the same documents.
        """
        if collection.count_params is None:
            return None
        try:
            payload, _ = self._get_json(
                f"/api/v1/count/{collection.name}/where", dict(collection.count_params)
            )
        except ApiNotFoundError:
            return None
        if isinstance(payload, list) and not payload:
            return 0  # MongoDB's aggregate yields no group when nothing matches
        if (
            isinstance(payload, list)
            and isinstance(payload[0], dict)
            and isinstance(payload[0].get("count"), int)
        ):
            return int(payload[0]["count"])
        return None

    def status(self) -> dict[str, Any]:
        payload, _ = self._get_json("/api/v1/status.json")
        return payload if isinstance(payload, dict) else {}

    # ---- paging -----------------------------------------------------------------------------

    def history_count(self, collection: Collection, *, at_most: int) -> int:
        """How many documents v3 history shows (ids only), counting no further than `at_most`."""
        seen = 0
        for page in self.history_pages(collection, fields="identifier,srvModified"):
            seen += len(page.docs)
            if seen >= at_most:
                return at_most
        return seen

    def history_pages(
        self, collection: Collection, *, after_srv_modified: int = 0, fields: str | None = None
    ) -> Iterator[Page]:
        """Every document created, changed or deleted with `srvModified >= after_srv_modified`."""
        limit = self.page_size
        param = max(after_srv_modified - 1, HISTORY_START_MS)
        seen_at_boundary: set[str] = set()
        boundary: int | None = None
        while True:
            params = (
                {"limit": str(limit)} if fields is None else {"limit": str(limit), "fields": fields}
            )
            payload, body = self._get_json(f"/api/v3/{collection.name}/history/{param}", params)
            path = f"/api/v3/{collection.name}/history"
            if not isinstance(payload, dict) or "result" not in payload:
                raise self._unexpected(path, payload, 'an object {"status", "result"}')
            docs = self._documents(payload["result"], path)
            if len(docs) > limit or any(
                int(_time_ms(d.get("srvModified")) or 0) < param for d in docs
            ):
                raise self._unexpected(
                    path, None, f"at most {limit} documents changed after {param}"
                )
            fresh = [d for d in docs if _doc_id(d) not in seen_at_boundary]
            if docs and not fresh and len(docs) >= limit:
                limit = self._grow(limit, collection, boundary)
                continue
            new_boundary = max((int(d.get("srvModified") or 0) for d in docs), default=boundary)
            if fresh:
                yield Page(collection.name, "v3", fresh, body, new_boundary)
            if len(docs) < limit:
                return
            if new_boundary != boundary:
                seen_at_boundary = set()
            boundary = new_boundary
            seen_at_boundary.update(
                _doc_id(d) for d in docs if int(d.get("srvModified") or 0) == boundary
            )
            param = max((boundary or 0) - 1, HISTORY_START_MS)

    def v1_pages(
        self,
        collection: Collection,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        through: int | str | None = None,
    ) -> Iterator[Page]:
        """Documents with event time in [since, until) (or [since, through]), newest first."""
        if not collection.paged:
            yield self._whole_collection(collection)
            return
        field_ = collection.time_field
        count = self.page_size
        # Always bound below: without a condition on its time field, v1 only looks at the last
        # few days (Nightscout's default find), which would silently drop older history.
        base = {f"find[{field_}][$gte]": _time_param(collection, since or EARLIEST_EVENT)}
        upper_key, upper = (
            (f"find[{field_}][$lte]", _time_param(collection, through))
            if through is not None
            else (f"find[{field_}][$lt]", _time_param(collection, until))
            if until is not None
            else (None, None)
        )
        seen_at_boundary: set[str] = set()
        boundary: Any = None
        while True:
            params = dict(base, count=str(count))
            if upper_key is not None and upper is not None:
                params[upper_key] = upper
            payload, body = self._get_json(f"/api/v1/{collection.name}.json", params)
            docs = self._documents(payload, f"/api/v1/{collection.name}.json")
            self._check_page(docs, count, field_, params, collection)
            fresh = [d for d in docs if _doc_id(d) not in seen_at_boundary]
            if docs and not fresh and len(docs) >= count:
                count = self._grow(count, collection, boundary)
                continue
            oldest = docs[-1].get(field_) if docs else boundary
            if fresh:
                yield Page(collection.name, "v1", fresh, body, oldest)
            if len(docs) < count:
                return
            if oldest != boundary:
                seen_at_boundary = set()
            boundary = oldest
            seen_at_boundary.update(_doc_id(d) for d in docs if d.get(field_) == boundary)
            upper_key, upper = f"find[{field_}][$lte]", str(boundary)

    def _documents(self, payload: Any, path: str) -> list[Any]:
        """The documents of a page. Items that are not objects are kept, to become rejects."""
        if not isinstance(payload, list):
            raise self._unexpected(path, payload, "a list of documents")
        return payload

    def _check_page(
        self,
        docs: list[Any],
        count: int,
        field_: str,
        params: dict[str, str],
        collection: Collection,
    ) -> None:
        """A page must respect the query: no more documents than asked, none outside the time
        bounds. A server that ignores them would have paging go round forever."""
        path = f"/api/v1/{collection.name}.json"
        if len(docs) > count:
            raise self._unexpected(path, None, f"at most {count} documents (it sent {len(docs)})")

        # Compared as MongoDB compares them: numbers for epoch-ms fields, text for ISO fields.
        def key(value: Any) -> float | str | None:
            if collection.time_format == "iso":
                return value if isinstance(value, str) else None
            return _time_ms(value)

        low = key(params.get(f"find[{field_}][$gte]"))
        high = key(params.get(f"find[{field_}][$lte]") or params.get(f"find[{field_}][$lt]"))
        for doc in docs:
            moment = key(doc.get(field_)) if isinstance(doc, dict) else None
            if moment is None:
                continue
            if (low is not None and moment < low) or (high is not None and moment > high):  # type: ignore[operator]
                raise self._unexpected(
                    path, None, f"documents within the {field_} bounds asked for"
                )

    def _unexpected(self, path: str, payload: Any, wanted: str) -> UnexpectedReplyError:
        got = "" if payload is None else f", got {type(payload).__name__}: {str(payload)[:80]}"
        return UnexpectedReplyError(
            f"Nightscout site {self.site.id!r}: GET {path} answered 200 but not as Nightscout "
            f"does (expected {wanted}{got}); nothing from it was written and the cursor did not "
            "move. Is NIGHTSCOUT_URL a Nightscout, and is it healthy?"
        )

    def _whole_collection(self, collection: Collection) -> Page:
        """Read a small collection that v1 cannot page (profile) whole: it returns the newest
        `count` documents (10 by default), so ask for more until the answer is shorter."""
        count = self.page_size
        while True:
            payload, body = self._get_json(f"/api/v1/{collection.name}.json", {"count": str(count)})
            docs = self._documents(payload, f"/api/v1/{collection.name}.json")
            if len(docs) < count:
                return Page(collection.name, "v1", docs, body, None)
            if count >= MAX_PROFILE_COUNT:
                raise PagingError(
                    f"Nightscout site {self.site.id!r}: more than {count} {collection.name} documents"
                )
            count *= 10

    def _grow(self, size: int, collection: Collection, boundary: object) -> int:
        if size >= self.page_size * MAX_PAGE_GROWTH:
            raise PagingError(
                f"Nightscout site {self.site.id!r}: more than {size} {collection.name} share the "
                f"time {boundary!r}; cannot page past them without skipping records"
            )
        return size * 2


class UnexpectedReplyError(NightscoutUnavailableError):
    """A 200 that is not what Nightscout sends: not a list of documents, or a page that ignores
    the query. Nothing of it is written and the cursor stays where it was."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _time_ms(value: Any) -> float | None:
    """A document's time field as epoch ms, for checking a page against its bounds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return moment.timestamp() * 1000
    return None


def _doc_id(doc: dict[str, Any]) -> str:
    return str(doc.get("identifier") or doc.get("_id") or json.dumps(doc, sort_keys=True))


def now_utc() -> datetime:
    return datetime.now(UTC)
