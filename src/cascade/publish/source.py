"""The lake side of a publish: which marts exist, at which Iceberg snapshot and Nessie commit.

The source is always the lake's `marts` namespace. On the lakehouse profile only Nessie's `main`
branch is published (what has been validated); the commit hash of `main` is read before and after
the tables are looked up, so the recorded hash and the snapshots belong together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from cascade.branching import MAIN
from cascade.config import Profile, Settings
from cascade.exceptions import LakeError, PublishError
from cascade.lake.branches import branch_hash
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.nessie import NessieClient
from cascade.transform.manifest import layer_models, model_grains

log = logging.getLogger(__name__)

SOURCE_NAMESPACE = "marts"
#: Publish reads only the validated branch.
PUBLISH_REF = MAIN.ref
RUN_TRANSFORM = "run `cascade transform` (or `cascade run`) first"


@dataclass(frozen=True)
class SourceMart:
    """One mart of the lake, pinned to the snapshot that will be published."""

    name: str
    table: Table
    snapshot_id: int
    metadata_location: str
    total_records: int | None

    @property
    def source_table(self) -> str:
        return f"{SOURCE_NAMESPACE}.{self.name}"

    @property
    def schema(self) -> Schema:
        return self.table.schema()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The snapshot's rows, streamed batch by batch."""
        reader = self.table.scan(snapshot_id=self.snapshot_id).to_arrow_batch_reader()
        yield from reader


@dataclass(frozen=True)
class Source:
    marts: tuple[SourceMart, ...]
    profile: str
    nessie_ref: str | None
    nessie_hash: str | None


def check_ref(settings: Settings) -> None:
    """Refuse anything but Nessie's `main` on the lakehouse profile."""
    if settings.lake.profile is Profile.LAKEHOUSE and settings.nessie.ref != PUBLISH_REF:
        raise PublishError(
            f"publish reads only Nessie's {PUBLISH_REF!r} branch (what has been validated), but "
            f"NESSIE_REF is {settings.nessie.ref!r}: merge it into {PUBLISH_REF} first, then publish "
            f"with NESSIE_REF={PUBLISH_REF}"
        )


def nessie_reference_hash(
    settings: Settings, ref: str = PUBLISH_REF, *, client: NessieClient | None = None
) -> str:
    """The commit hash `ref` points at; a PublishError when Nessie cannot say."""
    try:
        return branch_hash(settings, ref, client=client)
    except LakeError as exc:
        raise PublishError(str(exc)) from None


def expected_marts(parsed: dict[str, Any] | None) -> list[str]:
    """The marts the dbt project defines (its models under models/marts), when it is at hand."""
    return layer_models(parsed) if parsed is not None else []


def mart_grains(parsed: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """Each mart's grain, from dbt's manifest (its `unique` or `unique_combination` test)."""
    return model_grains(parsed) if parsed is not None else {}


def load_source(
    settings: Settings, wanted: Sequence[str] | None, *, parsed: dict[str, Any] | None
) -> Source:
    """The marts to publish, pinned to their current snapshots; refuses clearly when one is missing."""
    check_ref(settings)
    lakehouse = settings.lake.profile is Profile.LAKEHOUSE
    if not lakehouse:
        return Source(
            marts=_load_marts(load_lake_catalog(settings), wanted, parsed),
            profile=settings.lake.profile.value,
            nessie_ref=None,
            nessie_hash=None,
        )

    def pinned() -> Source:
        """The marts and main's commit, if main did not move while they were looked up."""
        before = nessie_reference_hash(settings)
        marts = _load_marts(load_lake_catalog(settings), wanted, parsed)
        after = nessie_reference_hash(settings)
        if before != after:
            log.info("Nessie's %s moved while the marts were looked up; looking again", PUBLISH_REF)
            raise _BranchMoved
        return Source(
            marts=marts,
            profile=settings.lake.profile.value,
            nessie_ref=PUBLISH_REF,
            nessie_hash=after,
        )

    try:
        return Retrying(
            retry=retry_if_exception_type(_BranchMoved), stop=stop_after_attempt(3), reraise=True
        )(pinned)
    except _BranchMoved:
        raise PublishError(
            f"Nessie's {PUBLISH_REF} kept moving while the marts were looked up (commits in progress?): try again"
        ) from None


class _BranchMoved(Exception):
    """Main got a new commit between the two looks at it."""


def _load_marts(
    catalog: Catalog, wanted: Sequence[str] | None, parsed: dict[str, Any] | None
) -> tuple[SourceMart, ...]:
    try:
        present = sorted(identifier[-1] for identifier in catalog.list_tables(SOURCE_NAMESPACE))
    except NoSuchNamespaceError:
        present = []
    if not present:
        raise PublishError(
            f"the lake has no marts (namespace {SOURCE_NAMESPACE!r} is missing or empty): {RUN_TRANSFORM}"
        )
    if wanted:
        names = sorted(dict.fromkeys(wanted))
        missing = [n for n in names if n not in present]
    else:
        names = present
        missing = [n for n in expected_marts(parsed) if n not in present]
    if missing:
        raise PublishError(
            f"mart(s) missing from the lake: {', '.join(f'{SOURCE_NAMESPACE}.{n}' for n in missing)} "
            f"(the lake has: {', '.join(present)}): {RUN_TRANSFORM}"
        )
    marts = []
    for name in names:
        try:
            table = catalog.load_table((SOURCE_NAMESPACE, name))
        except NoSuchTableError:
            raise PublishError(
                f"mart {SOURCE_NAMESPACE}.{name} disappeared from the lake: {RUN_TRANSFORM}"
            ) from None
        snapshot = table.current_snapshot()
        if snapshot is None:
            raise PublishError(
                f"mart {SOURCE_NAMESPACE}.{name} has no data yet (no snapshot): {RUN_TRANSFORM}"
            )
        summary = snapshot.summary
        total = summary.get("total-records") if summary is not None else None
        marts.append(
            SourceMart(
                name=name,
                table=table,
                snapshot_id=snapshot.snapshot_id,
                metadata_location=table.metadata_location,
                total_records=int(total) if total is not None else None,
            )
        )
    return tuple(marts)
