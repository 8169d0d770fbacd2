"""Nessie branches of the lakehouse: a branch's head, making the model's branches, promotion.

Write-audit-publish (see `cascade.branching`): ingest and build on `dev`, and only when every
dbt test passed merge `dev` into `main` in one atomic Nessie commit. Readers of `main` (Trino's
`iceberg` catalog, `cascade publish`, Superset) then see every new table at once or none of them,
and never a table whose tests failed. Nessie refuses the merge when `main` changed the same
tables since the branches last met; nothing is half-merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from cascade.branching import BRANCHES, MAIN
from cascade.config import Profile, Settings
from cascade.exceptions import LakeError
from cascade.lake.nessie import (
    EMPTY_BRANCH_HASH,
    BranchMovedError,
    NessieClient,
    NoCommonAncestorError,
)


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


def _client(
    settings: Settings, client: NessieClient | None
) -> AbstractContextManager[NessieClient]:
    """The caller's client (left open), or a new one on NESSIE_URI closed after use."""
    return (
        nullcontext(client) if client is not None else NessieClient.from_settings(settings.nessie)
    )


def branch_hash(settings: Settings, ref: str, *, client: NessieClient | None = None) -> str:
    """The commit hash `ref` points at on NESSIE_URI's Nessie."""
    with _client(settings, client) as nessie:
        return nessie.branch_hash(ref)


def ensure_branches(nessie: NessieClient, names: Sequence[str] | None = None) -> list[str]:
    """Create each missing branch of `names` (default: the branch model's) from main's head.

    Returns the branches it created; idempotent, and a branch made meanwhile by someone else is
    simply there.
    """
    names = [b.ref for b in BRANCHES] if names is None else names
    main_hash = nessie.find_branch(MAIN.ref)
    if main_hash is None:
        raise LakeError(
            f"Nessie at {nessie.uri} has no branch {MAIN.ref!r} "
            "(its default branch: check nessie.server.default-branch)"
        )
    created = []
    for name in names:
        if name == MAIN.ref or nessie.find_branch(name) is not None:
            continue
        if nessie.create_branch(name, from_ref=MAIN.ref, from_hash=main_hash):
            created.append(name)
    return created


def check_promotable(settings: Settings, source: str | None = None, target: str = MAIN.ref) -> str:
    """The branch to promote (default NESSIE_REF), or why there is none; asks Nessie nothing."""
    if settings.lake.profile is not Profile.LAKEHOUSE:
        raise LakeError(
            "the local profile's lake has no branches: promote needs CASCADE_PROFILE=lakehouse"
        )
    source = source or settings.nessie.ref
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
    target: str = MAIN.ref,
    client: NessieClient | None = None,
) -> Promotion:
    """Merge branch `source` (default: NESSIE_REF) into `target` (default: main), atomically."""
    source = check_promotable(settings, source, target)
    with _client(settings, client) as nessie:
        source_hash = nessie.branch_hash(source)
        before = nessie.branch_hash(target)
        if before == EMPTY_BRANCH_HASH and source_hash != before:
            # Nessie finds no common ancestor with a branch that has no commits, so it cannot
            # merge into it; receiving everything is then a fast-forward.
            return _fast_forward(nessie, source, source_hash, target)
        try:
            # Onto the commit just read (`target@before`), or refused if the target moved.
            merge = nessie.merge(
                source=source,
                source_hash=source_hash,
                target=target,
                target_hash=before,
                message=f"cascade promote {source} into {target}",
            )
        except NoCommonAncestorError as exc:
            raise LakeError(
                f"{exc}. Nothing was merged: {source!r} was made before {target!r} had any "
                f"commit. Point {source!r} at {target!r}'s head (Nessie: assign the branch) and "
                f"run the job on {source!r} again"
            ) from None
        except BranchMovedError as exc:
            raise LakeError(
                f"{exc}. Nothing was merged: something wrote those tables on {target!r} since "
                f"{source!r} last met it. Point {source!r} at {target!r}'s head (Nessie: assign "
                f"the branch) and run the job on {source!r} again"
            ) from None
    return Promotion(
        source=source,
        target=target,
        source_hash=source_hash,
        target_hash_before=before,
        target_hash=merge.target_hash,
        tables=merge.keys,
    )


def _fast_forward(nessie: NessieClient, source: str, source_hash: str, target: str) -> Promotion:
    """Point an empty `target` at `source`'s head (only if it is still empty)."""
    tables = nessie.keys(source, source_hash)
    nessie.assign(target, expected_hash=EMPTY_BRANCH_HASH, to_ref=source, to_hash=source_hash)
    return Promotion(
        source=source,
        target=target,
        source_hash=source_hash,
        target_hash_before=EMPTY_BRANCH_HASH,
        target_hash=nessie.branch_hash(target),
        tables=tables,
    )
