"""A small Nightscout API client for the contract tests: writes through v1 and v3, and reads.

Writes go the way real uploaders and apps do it:
- v1: `POST /api/v1/<collection>` with `api-secret: sha1(API_SECRET)` (xDrip+, Loop, AAPS);
- v3: `POST/PATCH/DELETE /api/v3/<collection>` with `Authorization: Bearer <JWT>`, the JWT
  coming from an access token made through the real API: `POST /api/v2/authorization/subjects`
  (a subject with the admin role), `GET /api/v2/authorization/subjects` (its accessToken), then
  `GET /api/v2/authorization/request/<accessToken>` (lib/authorization/endpoints.js).

Every document written is remembered and removed again by `cleanup()` (v1 DELETE by `_id`,
v3 DELETE `?permanent=true`), so a real server is left as it was found.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

HISTORY_LIMIT = 1000
SUBJECT_NAME = "cascade-contract"
DAY_MS = 86_400_000
HEX24 = re.compile(r"^[0-9a-f]{24}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SERVER_FIELDS = frozenset({"identifier", "srvCreated", "srvModified", "isValid"})


def iso(moment: datetime | int) -> str:
    """Nightscout's stored form of a time: UTC, milliseconds, `Z` (JavaScript toISOString)."""
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment / 1000, tz=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Target:
    """The server under test: its URL, admin secret, whether it reads anonymously, and the
    fake serving it (None for a real server)."""

    url: str
    api_secret: str
    open: bool
    fake: Any = None


@dataclass(frozen=True)
class Day:
    """A test's own UTC day in the past, and a marker unique to the test."""

    start: datetime
    marker: str

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + DAY_MS

    def ms(self, hours: float) -> int:
        return self.start_ms + round(hours * 3_600_000)

    def iso(self, hours: float) -> str:
        return iso(self.start + timedelta(hours=hours))


class NightscoutApi:
    """One Nightscout site, with its admin API secret."""

    def __init__(self, url: str, api_secret: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._secret_hash = hashlib.sha1(api_secret.encode()).hexdigest()
        self.http = httpx.Client(base_url=self.url, timeout=timeout)
        self._access_token: str | None = None
        self._jwt: tuple[str, float] | None = None
        self._created: list[tuple[str, str, str]] = []  # (api, collection, id)

    def close(self) -> None:
        self.http.close()

    # ---------------------------------------------------------------- auth

    @property
    def secret_header(self) -> dict[str, str]:
        return {"api-secret": self._secret_hash}

    def access_token(self) -> str:
        """The access token of an admin subject, created through the API if needed."""
        if self._access_token is None:
            listed = self.http.get("/api/v2/authorization/subjects", headers=self.secret_header)
            assert listed.status_code == 200, listed.text
            found = [s for s in listed.json() if s.get("name") == SUBJECT_NAME]
            if not found or "admin" not in (found[0].get("roles") or []):
                created = self.http.post(
                    "/api/v2/authorization/subjects",
                    headers=self.secret_header,
                    json={"name": SUBJECT_NAME, "roles": ["admin"], "notes": "contract tests"},
                )
                assert created.status_code == 200, created.text
                listed = self.http.get("/api/v2/authorization/subjects", headers=self.secret_header)
                found = [s for s in listed.json() if s.get("_id") == created.json().get("_id")]
            assert found and found[0].get("accessToken"), "the new subject has no accessToken"
            self._access_token = str(found[0]["accessToken"])
        return self._access_token

    def jwt(self) -> str:
        """A JWT for the admin subject (`/api/v2/authorization/request/<token>`), renewed
        a minute before it expires."""
        if self._jwt is None or self._jwt[1] - 60 < time.time():
            grant = self.http.get(f"/api/v2/authorization/request/{self.access_token()}")
            assert grant.status_code == 200, grant.status_code
            payload = grant.json()
            self._jwt = (str(payload["token"]), float(payload["exp"]))
        return self._jwt[0]

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt()}"}

    # ---------------------------------------------------------------- reads

    def get(
        self, path: str, params: Any = None, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """A GET with exactly the given headers (none: anonymous)."""
        return self.http.get(path, params=params, headers=headers or {})

    def v1(self, path: str, params: Any = None) -> Any:
        """A v1 read as admin (api-secret); asserts 200 and returns the JSON."""
        response = self.http.get(path, params=params, headers=self.secret_header)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def v3(self, path: str, params: Any = None) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.bearer)

    def v3_result(self, path: str, params: Any = None) -> Any:
        response = self.v3(path, params)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        payload = response.json()
        assert payload["status"] == 200
        return payload["result"]

    def server_time_ms(self) -> int:
        """The server's clock (`srvDate` of the public `/api/v3/version`)."""
        response = self.http.get("/api/v3/version")
        assert response.status_code == 200, response.text
        return int(response.json()["result"]["srvDate"])

    def history_since(self, collection: str, since_ms: int) -> list[dict[str, Any]]:
        """Every document v3 history reports as changed after `since_ms`, all pages."""
        found: list[dict[str, Any]] = []
        cursor = since_ms
        while True:
            page = self.v3_result(
                f"/api/v3/{collection}/history/{cursor}", {"limit": HISTORY_LIMIT}
            )
            found.extend(page)
            if len(page) < HISTORY_LIMIT:
                return found
            cursor = max(int(doc["srvModified"]) for doc in page)

    # ---------------------------------------------------------------- writes

    def v1_post(self, collection: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Upload through v1 as an uploader does; returns what the server answered."""
        response = self.http.post(f"/api/v1/{collection}", json=docs, headers=self.secret_header)
        assert response.status_code == 200, f"{collection}: {response.status_code} {response.text}"
        created: list[dict[str, Any]] = response.json()
        for doc in created:
            if doc.get("_id"):
                self._created.append(("v1", collection, str(doc["_id"])))
        return created

    def v3_create(self, collection: str, doc: dict[str, Any]) -> str:
        """Create through v3; returns the identifier."""
        response = self.http.post(f"/api/v3/{collection}", json=doc, headers=self.bearer)
        assert response.status_code in (200, 201), f"{response.status_code} {response.text}"
        identifier = str(response.json()["identifier"])
        self._created.append(("v3", collection, identifier))
        return identifier

    def v3_patch(self, collection: str, identifier: str, fields: dict[str, Any]) -> httpx.Response:
        return self.http.patch(
            f"/api/v3/{collection}/{identifier}", json=fields, headers=self.bearer
        )

    def v3_put(self, collection: str, identifier: str, doc: dict[str, Any]) -> httpx.Response:
        return self.http.put(f"/api/v3/{collection}/{identifier}", json=doc, headers=self.bearer)

    def v3_delete(
        self, collection: str, identifier: str, *, permanent: bool = False
    ) -> httpx.Response:
        params = {"permanent": "true"} if permanent else None
        return self.http.delete(
            f"/api/v3/{collection}/{identifier}", params=params, headers=self.bearer
        )

    def cleanup(self) -> None:
        """Remove every document this client wrote (best effort)."""
        created, self._created = self._created, []
        for api, collection, key in reversed(created):
            try:
                if api == "v1":
                    self.http.delete(f"/api/v1/{collection}/{key}", headers=self.secret_header)
                else:
                    self.v3_delete(collection, key, permanent=True)
            except httpx.HTTPError:
                pass
