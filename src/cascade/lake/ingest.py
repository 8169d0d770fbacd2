"""Ingest: Nightscout pages → parsed rows and rejects → raw Iceberg tables, with cursors.

Per table, sites are downloaded concurrently (each site's requests bounded by its client) while
this thread parses and commits, so a load costs little more than its download. Every page is
also landed in stage before it is parsed. Commits happen every `ingest_commit_rows` records and
at the end of each site; each commit carries the site's cursor (see `tables.upsert`).

Cursors (table property `cascade.cursor.<site>`):
- `{"api": "v3", "srv_modified": M}`: everything with srvModified < M is in; resume at >= M.
- `{"api": "v1", "loaded_until": T}`: every event up to T (ms) is in; the next run asks from
  T minus a look-back (late uploads), newest first. While a run is under way the cursor also
  holds `pending: {"top": T2, "through": B}`: events in [B, T2] are in, so a resumed run pages
  on from B down to T and then sets `loaded_until` to T2.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException

from cascade.config import Settings, SiteConfig
from cascade.exceptions import CascadeError, LakeError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.records import ParsedBatch, rejects_to_arrow, to_arrow
from cascade.lake.schemas import RAW_COLLECTIONS
from cascade.lake.stage import Stage
from cascade.lake.tables import (
    append_rejects,
    ensure_raw_table,
    ensure_rejects_table,
    read_cursor,
    upsert,
)
from cascade.source.nightscout.client import NightscoutClient, Page
from cascade.source.nightscout.collections import get_collection

ProgressCallback = Callable[[str, str, int], None]  # (site_id, collection, documents just read)


@dataclass
class LoadReport:
    """What one load did for one site and collection."""

    site_id: str
    collection: str
    api: str = ""
    pages: int = 0
    documents: int = 0
    inserted: int = 0
    replaced: int = 0
    unchanged: int = 0
    rejected: int = 0
    commits: int = 0
    seconds: float = 0.0
    cursor: dict[str, Any] | None = None


@dataclass
class _Item:
    site_id: str
    page: Page | None = None  # None: the site is done
    cursor: dict[str, Any] | None = None  # the cursor valid once this page is committed
    error: BaseException | None = None


@dataclass
class _SiteState:
    batch: ParsedBatch
    report: LoadReport
    api: str = ""
    cursor: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)


def new_load_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]


def make_client(settings: Settings, site: SiteConfig) -> NightscoutClient:
    return NightscoutClient(
        site,
        page_size=settings.nightscout_page_size,
        timeout_seconds=settings.nightscout_timeout_seconds,
        max_retries=settings.nightscout_max_retries,
        backoff_seconds=settings.nightscout_backoff_seconds,
        concurrency=settings.nightscout_concurrency,
    )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _pages_with_cursor(
    client: NightscoutClient,
    collection_name: str,
    cursor: dict[str, Any] | None,
    *,
    since: datetime | None,
    until: datetime | None,
    lookback: timedelta,
    run_started: datetime,
) -> Iterator[tuple[Page, dict[str, Any] | None]]:
    """Pages to load and, after each, the cursor that becomes true once it is committed."""
    collection = get_collection(collection_name)
    if since is not None or until is not None:  # an explicit window: re-read it, cursor untouched
        for page in client.v1_pages(collection, since=since, until=until):
            yield page, None
        return
    if client.has_v3() and (cursor is None or cursor.get("api") == "v3"):
        after = int(cursor["srv_modified"]) if cursor else 0
        for page in client.history_pages(collection, after_srv_modified=after):
            yield page, {"api": "v3", "srv_modified": int(page.boundary or after)}
        return
    if not collection.paged:  # v1 profiles: a handful, always read whole
        for page in client.v1_pages(collection):
            yield page, {"api": "v1", "loaded_until": _ms(run_started)}
        return
    # v1: newest first, from now (or a pending run's boundary) down to the last cursor.
    loaded_until = int(cursor["loaded_until"]) if cursor and "loaded_until" in cursor else None
    pending = cursor.get("pending") if cursor else None
    floor = (
        datetime.fromtimestamp(loaded_until / 1000, UTC) - lookback if loaded_until is not None else None
    )
    if pending:
        top, pages = int(pending["top"]), client.v1_pages(collection, since=floor, through=pending["through"])
    else:
        top, pages = _ms(run_started), client.v1_pages(collection, since=floor, until=run_started)
    base: dict[str, Any] = {"api": "v1"}
    if loaded_until is not None:
        base["loaded_until"] = loaded_until
    for page in pages:
        yield page, dict(base, pending={"top": top, "through": page.boundary})
    yield Page(collection_name, "v1", [], b"", None), {"api": "v1", "loaded_until": top}


class Ingestor:
    """Loads one or more collections for one or more sites into the raw tables."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        clients: dict[str, NightscoutClient] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_lake_catalog(settings)
        self.stage = Stage.for_settings(settings)
        self._clients = clients or {}
        self.progress = progress or (lambda site, collection, n: None)
        self.lookback = timedelta(hours=settings.nightscout_v1_lookback_hours)

    def client(self, site: SiteConfig) -> NightscoutClient:
        if site.id not in self._clients:
            self._clients[site.id] = make_client(self.settings, site)
        return self._clients[site.id]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def run(
        self,
        sites: list[SiteConfig],
        collections: tuple[str, ...] = RAW_COLLECTIONS,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LoadReport]:
        reports: list[LoadReport] = []
        for name in collections:
            reports.extend(self._load_collection(name, sites, since=since, until=until))
        return reports

    def rebuild_from_stage(
        self, site_ids: list[str], collections: tuple[str, ...] = RAW_COLLECTIONS
    ) -> list[LoadReport]:
        """Re-parse every landed page into the raw tables (idempotent: nothing is duplicated)."""
        load_id = new_load_id()
        reports = []
        for name in collections:
            table = ensure_raw_table(self.catalog, name)
            rejects = ensure_rejects_table(self.catalog)
            for site_id in site_ids:
                state = _SiteState(ParsedBatch(name, site_id), LoadReport(site_id, name, api="stage"))
                for staged in self.stage.pages(site_id, name):
                    state.report.pages += 1
                    state.report.documents += len(staged.docs)
                    state.batch.add(staged.docs, now_ms=_ms(datetime.now(UTC)))
                    self.progress(site_id, name, len(staged.docs))
                    if len(state.batch) >= self.settings.ingest_commit_rows:
                        self._commit(table, rejects, state, load_id, "stage")
                self._commit(table, rejects, state, load_id, "stage")
                state.report.seconds = time.perf_counter() - state.started
                reports.append(state.report)
        return reports

    # ---- one collection ------------------------------------------------------------------------

    def _load_collection(
        self, name: str, sites: list[SiteConfig], *, since: datetime | None, until: datetime | None
    ) -> list[LoadReport]:
        table = ensure_raw_table(self.catalog, name)
        rejects = ensure_rejects_table(self.catalog)
        load_id = new_load_id()
        run_started = datetime.now(UTC)
        items: queue.Queue[_Item] = queue.Queue(maxsize=64)
        states = {s.id: _SiteState(ParsedBatch(name, s.id), LoadReport(s.id, name)) for s in sites}
        cursors = {s.id: read_cursor(table, s.id) for s in sites}
        stop = threading.Event()

        def fetch(site: SiteConfig) -> None:
            sequence = 0
            try:
                client = self.client(site)
                for page, cursor in _pages_with_cursor(
                    client, name, cursors[site.id], since=since, until=until,
                    lookback=self.lookback, run_started=run_started,
                ):
                    if stop.is_set():
                        return
                    if page.body:
                        sequence += 1
                        self.stage.land(site.id, name, load_id, sequence, page.api, page.body)
                    items.put(_Item(site.id, page, cursor))
                items.put(_Item(site.id))
            except BaseException as exc:  # handed to the committing thread, which raises it
                items.put(_Item(site.id, error=exc))

        workers = [threading.Thread(target=fetch, args=(s,), daemon=True, name=f"fetch-{s.id}") for s in sites]
        pending_sites = set(states)
        concurrency = max(1, self.settings.ingest_site_concurrency)
        started = 0
        for worker in workers[:concurrency]:
            worker.start()
            started += 1
        try:
            while pending_sites:
                item = items.get()
                state = states[item.site_id]
                if item.error is not None:
                    raise item.error
                if item.page is None:
                    self._commit(table, rejects, state, load_id, state.api or "v1")
                    state.report.seconds = time.perf_counter() - state.started
                    pending_sites.discard(item.site_id)
                    if started < len(workers):
                        workers[started].start()
                        started += 1
                    continue
                page = item.page
                state.api = state.report.api = page.api
                if page.body:
                    state.report.pages += 1
                state.report.documents += len(page.docs)
                state.batch.add(page.docs, now_ms=_ms(datetime.now(UTC)))
                if item.cursor is not None:
                    state.cursor = item.cursor
                self.progress(item.site_id, name, len(page.docs))
                if len(state.batch) >= self.settings.ingest_commit_rows:
                    self._commit(table, rejects, state, load_id, page.api)
        finally:
            stop.set()
            while not items.empty():  # unblock fetchers waiting on a full queue
                items.get_nowait()
        return [states[s.id].report for s in sites]

    def _commit(self, table: Any, rejects_table: Any, state: _SiteState, load_id: str, api: str) -> None:
        batch = state.batch
        ingested_at_us = int(time.time() * 1_000_000)
        try:
            if batch.rejects:
                state.report.rejected += append_rejects(
                    rejects_table,
                    batch.site_id,
                    rejects_to_arrow(batch.rejects, ingested_at_us=ingested_at_us, load_id=load_id),
                )
            rows = to_arrow(batch.collection, batch.rows, ingested_at_us=ingested_at_us, load_id=load_id, api=api)
            result = upsert(
                table, batch.site_id, rows, cursor=state.cursor,
                snapshot_properties={"cascade.load_id": load_id},
            )
        except CommitFailedException as exc:
            raise LakeError(
                f"raw.{batch.collection}: another writer committed first ({exc}); "
                "is a second `cascade ingest` running? Re-run: nothing was half-written."
            ) from None
        state.report.inserted += result.inserted
        state.report.replaced += result.replaced
        state.report.unchanged += result.unchanged + result.stale
        state.report.commits += 1
        state.report.cursor = state.cursor
        state.batch = ParsedBatch(batch.collection, batch.site_id)


def ingest(
    settings: Settings,
    *,
    site_ids: list[str] | None = None,
    collections: tuple[str, ...] = RAW_COLLECTIONS,
    since: datetime | None = None,
    until: datetime | None = None,
    from_stage: bool = False,
    progress: ProgressCallback | None = None,
) -> list[LoadReport]:
    """Run one load as `cascade ingest` does."""
    for name in collections:
        get_collection(name)
    if from_stage:
        ingestor = Ingestor(settings, progress=progress)
        ids = site_ids or [s.id for s in settings.sites()] or ingestor.stage.site_ids()
        return ingestor.rebuild_from_stage(ids, collections)
    sites = [settings.site(i) for i in site_ids] if site_ids else settings.sites()
    if not sites:
        raise CascadeError(
            "no Nightscout site configured: set NIGHTSCOUT_URL (and NIGHTSCOUT_API_SECRET or "
            "NIGHTSCOUT_TOKEN if the site is locked), or NIGHTSCOUT_SITES for several sites"
        )
    ingestor = Ingestor(settings, progress=progress)
    try:
        return ingestor.run(sites, collections, since=since, until=until)
    finally:
        ingestor.close()
