"""Nessie branches of the lakehouse: a branch's head commit, and promoting one branch into another.

Write-audit-publish: ingest and build on `dev` (Trino catalog `iceberg_dev`), and only when every
dbt test passed merge `dev` into `main` in one atomic Nessie commit. Readers of `main` (Trino's
`iceberg` catalog, `cascade publish`, Superset) then see every new table at once or none of them,
and never a table whose tests failed. Nessie refuses the merge when `main` changed the same
tables since the branches last met; nothing is half-merged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx

from cascade.config import Profile, Settings
from cascade.exceptions import LakeError

PROMOTE_INTO = "main"
TIMEOUT_SECONDS = 30.0
#: The head of a branch with no commits yet (Nessie's "no ancestor" hash), e.g. a new stack's main.
EMPTY_BRANCH_HASH = "2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d"


@dataclass(frozen=True)
class Promotion:
    """One merge of `source` into `target`."""

    source: str
    target: str
    source_hash: str
    target_hash_before: str
    target_hash: str
    tables: tuple[str, ...]  # the content keys the merge changed on `target`

    @property
    def applied(self) -> bool:
        return self.target_hash != self.target_hash_before

    def summary(self) -> str:
        if not self.applied:
            return f"{self.target} already has everything on {self.source}: nothing to merge"
        return (
            f"merged {self.source} @ {self.source_hash[:12]} into {self.target}: "
            f"{len(self.tables)} tables and namespaces; {self.target} is now @ {self.target_hash[:12]}"
        )


def _api(settings: Settings) -> str:
    return f"{settings.nessie_uri.rstrip('/')}/api/v2"


def _client(client: httpx.Client | None) -> AbstractContextManager[httpx.Client]:
    """The caller's client (left open), or a new one closed after use."""
    return nullcontext(client) if client is not None else httpx.Client(timeout=TIMEOUT_SECONDS)


def _send(
    settings: Settings, what: str, request: httpx.Request, client: httpx.Client
) -> tuple[int, Any]:
    """(status, JSON body) of one Nessie call; a clear LakeError when Nessie cannot be reached."""
    try:
        response = client.send(request)
    except httpx.HTTPError as exc:
        raise LakeError(
            f"cannot reach Nessie at {settings.nessie_uri} to {what}: {type(exc).__name__}; "
            "is the stack up (`cascade stack up`)?"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def _refused(settings: Settings, what: str, status: int, body: Any) -> LakeError:
    message = body.get("message") if isinstance(body, dict) else None
    return LakeError(
        f"Nessie at {settings.nessie_uri} refused to {what} ({status}): {message or 'no reason given'}"
    )


def branch_hash(settings: Settings, ref: str, *, client: httpx.Client | None = None) -> str:
    """The commit hash `ref` points at (GET {NESSIE_URI}/api/v2/trees/{ref})."""
    what = f"read branch {ref!r}"
    with _client(client) as http:
        request = http.build_request("GET", f"{_api(settings)}/trees/{ref}")
        status, body = _send(settings, what, request, http)
    if status == 404:
        raise LakeError(f"Nessie at {settings.nessie_uri} has no branch {ref!r}")
    if status != 200:
        raise _refused(settings, what, status, body)
    try:
        return str(body["reference"]["hash"])
    except (KeyError, TypeError):
        raise LakeError(
            f"Nessie at {settings.nessie_uri} sent an unexpected answer for branch {ref!r}"
        ) from None


def check_promotable(
    settings: Settings, source: str | None = None, target: str = PROMOTE_INTO
) -> str:
    """The branch to promote (default NESSIE_REF), or why there is none; asks Nessie nothing."""
    if settings.cascade_profile is not Profile.LAKEHOUSE:
        raise LakeError(
            "the local profile's lake has no branches: promote needs CASCADE_PROFILE=lakehouse"
        )
    source = source or settings.nessie_ref
    if source == target:
        raise LakeError(
            f"nothing to promote: {source!r} is the branch to promote into; build on another "
            "branch (NESSIE_REF=dev) and promote that one"
        )
    return source


def promote(
    settings: Settings,
    *,
    source: str | None = None,
    target: str = PROMOTE_INTO,
    client: httpx.Client | None = None,
) -> Promotion:
    """Merge branch `source` (default: NESSIE_REF) into `target` (default: main), atomically."""
    source = check_promotable(settings, source, target)
    what = f"merge {source!r} into {target!r}"
    with _client(client) as http:
        source_hash = branch_hash(settings, source, client=http)
        before = branch_hash(settings, target, client=http)
        if before == EMPTY_BRANCH_HASH and source_hash != before:
            # Nessie finds no common ancestor with a branch that has no commits, so it cannot
            # merge into it; receiving everything is then a fast-forward.
            return _fast_forward(settings, source, source_hash, target, http)
        # `target@before`: merged onto the commit just read, or refused if the target moved.
        request = http.build_request(
            "POST",
            f"{_api(settings)}/trees/{target}@{before}/history/merge",
            json={
                "fromRefName": source,
                "fromHash": source_hash,
                "message": f"cascade promote {source} into {target}",
            },
        )
        status, merged = _send(settings, what, request, http)
    if status == 404 and "common ancestor" in str((merged or {}).get("message", "")):
        raise LakeError(
            f"{_refused(settings, what, status, merged)}. Nothing was merged: {source!r} was made "
            f"before {target!r} had any commit. Point {source!r} at {target!r}'s head (Nessie: "
            f"assign the branch) and run the job on {source!r} again"
        )
    if status == 409:
        raise LakeError(
            f"{_refused(settings, what, status, merged)}. Nothing was merged: something wrote "
            f"those tables on {target!r} since {source!r} last met it. Point {source!r} at "
            f"{target!r}'s head (Nessie: assign the branch) and run the job on {source!r} again"
        )
    if status != 200 or not isinstance(merged, dict) or not merged.get("wasSuccessful"):
        raise _refused(settings, what, status, merged)
    return Promotion(
        source=source,
        target=target,
        source_hash=source_hash,
        target_hash_before=before,
        target_hash=str(merged.get("resultantTargetHash") or before),
        tables=tuple(
            ".".join(detail["key"]["elements"])
            for detail in merged.get("details") or ()
            if isinstance(detail, dict) and "key" in detail
        ),
    )


def _fast_forward(
    settings: Settings, source: str, source_hash: str, target: str, http: httpx.Client
) -> Promotion:
    """Point an empty `target` at `source`'s head (only if it is still empty)."""
    what = f"fast-forward {target!r} to {source!r}"
    request = http.build_request("GET", f"{_api(settings)}/trees/{source}@{source_hash}/entries")
    status, listing = _send(settings, f"list the tables of {source!r}", request, http)
    if status != 200 or not isinstance(listing, dict):
        raise _refused(settings, f"list the tables of {source!r}", status, listing)
    request = http.build_request(
        "PUT",
        f"{_api(settings)}/trees/{target}@{EMPTY_BRANCH_HASH}",
        json={"type": "BRANCH", "name": source, "hash": source_hash},
    )
    status, body = _send(settings, what, request, http)
    if status not in (200, 204):
        raise _refused(settings, what, status, body)
    return Promotion(
        source=source,
        target=target,
        source_hash=source_hash,
        target_hash_before=EMPTY_BRANCH_HASH,
        target_hash=branch_hash(settings, target, client=http),
        tables=tuple(
            ".".join(entry["name"]["elements"])
            for entry in listing.get("entries") or ()
            if isinstance(entry, dict) and "name" in entry
        ),
    )
