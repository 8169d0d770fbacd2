"""Nessie's REST API v2: the calls Cascade makes, in one small typed client on httpx.

Promotion (`lake/branches.py`), `cascade branch`, `cascade doctor` and the local stack all go
through `NessieClient`, so every Nessie answer is read, and every failure worded, in one place.
Messages name Nessie's URL (which holds no credentials) and never a request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from cascade.branching import check_ref_name
from cascade.exceptions import LakeError

if TYPE_CHECKING:
    from cascade.config import NessieSettings

#: The head of a branch with no commits yet (Nessie's "no ancestor" hash), e.g. a new server's main.
EMPTY_BRANCH_HASH = "2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d"
DEFAULT_TIMEOUT_SECONDS = 30.0


class NoSuchBranchError(LakeError):
    """Nessie has no branch of that name."""


class BranchMovedError(LakeError):
    """A conditional change found the branch at another commit than expected (Nessie's 409)."""


class NoCommonAncestorError(LakeError):
    """Nessie cannot merge: the branches share no commit."""


@dataclass(frozen=True)
class Merge:
    """What one merge did: the target's new head and the content keys it changed."""

    target_hash: str
    keys: tuple[str, ...]


class NessieClient:
    """Nessie at `uri` (its base URL; the API is `{uri}/api/v2`). Use as a context manager."""

    def __init__(
        self,
        uri: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self._http = httpx.Client(
            base_url=f"{self.uri}/api/v2", timeout=timeout, transport=transport
        )

    @classmethod
    def from_settings(
        cls, settings: NessieSettings, *, transport: httpx.BaseTransport | None = None
    ) -> NessieClient:
        """A client on NESSIE_URI whose calls each take at most NESSIE_TIMEOUT_SECONDS."""
        return cls(settings.uri, timeout=settings.timeout_seconds, transport=transport)

    def __enter__(self) -> NessieClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- reading -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The server's configuration (default branch, API versions)."""
        status, body = self._call("read its configuration", "GET", "/config")
        if status != 200 or not isinstance(body, dict):
            raise self._refused("read its configuration", status, body)
        return body

    def find_branch(self, name: str) -> str | None:
        """The commit hash branch `name` points at, or None when there is no such branch."""
        what = f"read branch {name!r}"
        status, body = self._call(what, "GET", f"/trees/{_ref(check_ref_name(name, 'branch'))}")
        if status == 404:
            return None
        if status != 200:
            raise self._refused(what, status, body)
        try:
            return str(body["reference"]["hash"])
        except (KeyError, TypeError):
            raise LakeError(
                f"Nessie at {self.uri} sent an unexpected answer for branch {name!r}"
            ) from None

    def branch_hash(self, name: str) -> str:
        """The commit hash branch `name` points at; NoSuchBranchError when it does not exist."""
        found = self.find_branch(name)
        if found is None:
            raise NoSuchBranchError(f"Nessie at {self.uri} has no branch {name!r}")
        return found

    def branches(self) -> dict[str, str]:
        """Every branch with its head hash."""
        status, body = self._call("list its branches", "GET", "/trees")
        if status != 200 or not isinstance(body, dict):
            raise self._refused("list its branches", status, body)
        return {
            str(ref["name"]): str(ref.get("hash", ""))
            for ref in body.get("references") or ()
            if isinstance(ref, dict) and ref.get("type") == "BRANCH"
        }

    def keys(self, ref: str, at_hash: str) -> tuple[str, ...]:
        """The content keys (namespaces and tables, dotted) on `ref` at commit `at_hash`."""
        what = f"list the tables of {ref!r}"
        status, body = self._call(what, "GET", f"/trees/{_ref(ref, at_hash)}/entries")
        if status != 200 or not isinstance(body, dict):
            raise self._refused(what, status, body)
        return tuple(
            ".".join(entry["name"]["elements"])
            for entry in body.get("entries") or ()
            if isinstance(entry, dict) and "name" in entry
        )

    # ---- changing ------------------------------------------------------------------------------
    def create_branch(self, name: str, *, from_ref: str, from_hash: str) -> bool:
        """Create branch `name` at `from_ref`@`from_hash`; False if it exists already."""
        what = f"create branch {name!r} from {from_ref!r}"
        status, body = self._call(
            what,
            "POST",
            "/trees",
            params={"name": check_ref_name(name, "branch"), "type": "BRANCH"},
            json={"type": "BRANCH", "name": from_ref, "hash": from_hash},
        )
        if status == 409:
            return False
        if status not in (200, 201):
            raise self._refused(what, status, body)
        return True

    def assign(self, branch: str, *, expected_hash: str, to_ref: str, to_hash: str) -> None:
        """Point `branch` at `to_ref`@`to_hash`, only if it still is at `expected_hash`."""
        what = f"point {branch!r} at {to_ref!r}"
        status, body = self._call(
            what,
            "PUT",
            f"/trees/{_ref(branch, expected_hash)}",
            json={"type": "BRANCH", "name": to_ref, "hash": to_hash},
        )
        if status == 409:
            raise BranchMovedError(f"{self._refused(what, status, body)}")
        if status not in (200, 204):
            raise self._refused(what, status, body)

    def merge(
        self, *, source: str, source_hash: str, target: str, target_hash: str, message: str
    ) -> Merge:
        """Merge `source`@`source_hash` onto `target`, only if `target` is still at `target_hash`."""
        what = f"merge {source!r} into {target!r}"
        status, body = self._call(
            what,
            "POST",
            f"/trees/{_ref(target, target_hash)}/history/merge",
            json={"fromRefName": source, "fromHash": source_hash, "message": message},
        )
        if status == 404 and "common ancestor" in str((body or {}).get("message", "")):
            raise NoCommonAncestorError(str(self._refused(what, status, body)))
        if status == 409:
            raise BranchMovedError(str(self._refused(what, status, body)))
        if status != 200 or not isinstance(body, dict) or not body.get("wasSuccessful"):
            raise self._refused(what, status, body)
        return Merge(
            target_hash=str(body.get("resultantTargetHash") or target_hash),
            keys=tuple(
                ".".join(detail["key"]["elements"])
                for detail in body.get("details") or ()
                if isinstance(detail, dict) and "key" in detail
            ),
        )

    # ---- plumbing ------------------------------------------------------------------------------
    def _call(self, what: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON body) of one call; a clear LakeError when Nessie cannot be reached."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LakeError(
                f"cannot reach Nessie at {self.uri} to {what}: {type(exc).__name__}; "
                "is it running (locally: `cascade stack up`) and is NESSIE_URI right?"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body

    def _refused(self, what: str, status: int, body: Any) -> LakeError:
        message = body.get("message") if isinstance(body, dict) else None
        return LakeError(
            f"Nessie at {self.uri} refused to {what} ({status}): {message or 'no reason given'}"
        )


def _ref(name: str, at_hash: str | None = None) -> str:
    """A reference as one path segment: `name[@hash]`, a `/` in the name escaped (%2F)."""
    return quote(name if at_hash is None else f"{name}@{at_hash}", safe="@")
