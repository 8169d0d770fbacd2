"""Ingest: Nightscout pages → parsed rows and rejects → raw Iceberg tables, with cursors.

Reading strategy, per site and collection (each run, in this order):
1. **v3 history**, when the site gives us v3 (an access token; see `NightscoutClient.v3_access`):
   every document created, edited or deleted through v3 since the v3 cursor.
2. **The count check.** v1 counts what the site holds (`/api/v1/count`). If the lake already
   holds at least that many of the site's documents, v3 history covers the collection and v1
   is skipped. Otherwise (documents uploaded through v1 carry no `srvModified`, so v3 history
   never shows them) **v1 date paging** reads from the v1 cursor, newest first, with a look-back.
3. **Reconcile.** If the lake still holds fewer documents than v1 counted (a late upload older
   than the look-back, say), the whole v1 history is read again; if it is still short, the run
   fails loudly with the numbers (`IncompleteLoadError`), never "ok" with rows missing.
Profiles, which v1 cannot page, are read whole every run (they are few).

Per pass, sites are downloaded concurrently (each site's requests bounded by its client) while
this thread parses and commits, so a load costs little more than its download. Commits happen
every `ingest_commit_rows` records and at the end of each site; each commit carries the site's
cursor (see `tables.upsert`). The pages of a commit are landed in stage just before it, and only
when it writes something: the stage holds the source of every row, and a run that finds nothing
new writes nothing at all (a read-only home can still be checked for news).

Cursors (table property `cascade.cursor.<site>`, one JSON object with a key per API):
- `"v3": {"srv_modified": M}`: everything with srvModified < M is in; resume at >= M.
- `"v1": {"loaded_until": T}`: every event up to T (ms) is in; the next run asks from
  T minus a look-back (late uploads), newest first. While a run is under way the cursor also
  holds `pending: {"top": T2, "through": B}`: events from B up are in, so a resumed run pages
  on from B down to T and then sets `loaded_until` to T2.
Cursors written by earlier versions (`{"api": "v3", ...}` or `{"api": "v1", ...}`) are read as
the one API they name.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import And, EqualTo, IsNull
from pyiceberg.table import Table
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from cascade.config import Settings, SiteConfig
from cascade.exceptions import (
    CascadeError,
    IncompleteLoadError,
    LakeError,
    NightscoutError,
    SitesFailedError,
)
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.records import ParsedBatch, rejects_to_arrow, to_arrow
from cascade.lake.schemas import RAW_COLLECTIONS
from cascade.lake.stage import Stage
from cascade.lake.tables import (
    UpsertResult,
    append_rejects,
    ensure_raw_table,
    ensure_rejects_table,
    read_cursor,
    upsert,
)
from cascade.source.nightscout.client import NightscoutClient, Page, V3Access
from cascade.source.nightscout.collections import Collection, get_collection

COMMIT_ATTEMPTS = 8  # re-read and re-merge this often when other writers commit first


class ProgressCallback(Protocol):
    """Told of documents as they are read, and once more (`done=True`) when a site's collection is finished."""

    def __call__(
        self, site_id: str, collection: str, documents: int, done: bool = False
    ) -> None: ...


def _no_progress(site_id: str, collection: str, documents: int, done: bool = False) -> None:
    return None


@dataclass
class LoadReport:
    """What one load did for one site and collection.

    `documents` = `inserted` + `replaced` + `unchanged` + `rejected` (a reject recorded by an
    earlier run counts again as rejected; a version superseded within the run as unchanged).
    """

    site_id: str
    collection: str
    api: str = ""  # what was read: "v1", "v3", "v1+v3" or "stage"
    pages: int = 0
    documents: int = 0
    inserted: int = 0
    replaced: int = 0
    unchanged: int = 0
    rejected: int = 0
    commits: int = 0
    seconds: float = 0.0
    cursor: dict[str, Any] | None = None
    reason: str = ""  # why this strategy
    server_count: int | None = None  # documents v1 counted on the site
    lake_count: int | None = None  # the site's documents the lake holds afterwards (rows + rejects)
    error: str | None = None  # why the site failed; the other sites went on


# One pass yields pages and, after each, the cursor part ("v1" or "v3") true once it is committed.
CursorPart = tuple[str, dict[str, Any]]
PageSource = Iterator[tuple[Page, CursorPart | None]]


@dataclass
class _Item:
    site_id: str
    page: Page | None = None  # None: the site is done
    compressed: bytes = b""  # the page's body as the stage stores it
    cursor: CursorPart | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class _UnlandedPage:
    sequence: int
    api: str
    compressed: bytes


@dataclass
class _SiteState:
    batch: ParsedBatch
    report: LoadReport
    cursor: dict[str, Any] | None
    api: str = ""
    unlanded: list[_UnlandedPage] = field(default_factory=list)  # pages of the uncommitted batch


def new_load_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]


def make_client(settings: Settings, site: SiteConfig) -> NightscoutClient:
    return NightscoutClient(
        site,
        page_size=settings.nightscout.page_size,
        timeout_seconds=settings.nightscout.timeout_seconds,
        max_retries=settings.nightscout.max_retries,
        backoff_seconds=settings.nightscout.backoff_seconds,
        concurrency=settings.nightscout.concurrency,
    )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def site_cursor(table: Table, site_id: str) -> dict[str, Any]:
    """The site's cursor as `{"v1": {...}, "v3": {...}}`, whatever version of Cascade wrote it."""
    cursor = read_cursor(table, site_id) or {}
    legacy_api = cursor.get("api")
    if legacy_api in ("v1", "v3"):
        return {legacy_api: {k: v for k, v in cursor.items() if k != "api"}}
    return cursor


def v3_pages(
    client: NightscoutClient, collection: Collection, cursor: dict[str, Any]
) -> PageSource:
    after = int(cursor["v3"]["srv_modified"]) if "v3" in cursor else 0
    for page in client.history_pages(collection, after_srv_modified=after):
        yield page, ("v3", {"srv_modified": int(page.boundary or after)})


def v1_pages(
    client: NightscoutClient,
    collection: Collection,
    cursor: dict[str, Any],
    *,
    lookback: timedelta | None,
    run_started: datetime,
) -> PageSource:
    """v1 from the newest document down to the cursor less `lookback` (None: the whole history)."""
    top = _ms(run_started)
    if not collection.paged:  # profiles: a handful, always read whole
        for page in client.v1_pages(collection):
            yield page, ("v1", {"loaded_until": top})
        return
    state = cursor.get("v1", {})
    loaded_until = state.get("loaded_until")
    floor = (
        datetime.fromtimestamp(int(loaded_until) / 1000, UTC) - lookback
        if loaded_until is not None and lookback is not None
        else None
    )
    pending = state.get("pending")
    if pending and lookback is not None:
        top, pages = (
            int(pending["top"]),
            client.v1_pages(collection, since=floor, through=pending["through"]),
        )
    else:
        pages = client.v1_pages(collection, since=floor)
    base: dict[str, Any] = {} if loaded_until is None else {"loaded_until": int(loaded_until)}
    for page in pages:
        yield page, ("v1", dict(base, pending={"top": top, "through": page.boundary}))
    yield Page(collection.name, "v1", [], b"", None), ("v1", {"loaded_until": top})


def window_pages(
    client: NightscoutClient, collection: Collection, since: datetime | None, until: datetime | None
) -> PageSource:
    """An explicit window: re-read it with v1, cursor untouched."""
    for page in client.v1_pages(collection, since=since, until=until):
        yield page, None


@dataclass(frozen=True)
class Strategy:
    """How a site's collection is read: v3 history, v1 paging, or both; and why."""

    v3: bool
    v1: bool
    reason: str

    @property
    def name(self) -> str:
        return "+".join(api for api, used in (("v1", self.v1), ("v3", self.v3)) if used)


def choose_strategy(
    access: V3Access, collection: Collection, server_count: int | None, held: Held | None
) -> Strategy:
    """Decide from what the site's APIs allow, and from what v1 counts against what the lake
    holds (after v3 history has been read, when it can be).

    v3 history alone is trusted only where it really covers the collection: the lake holds every
    document v1 counts, and every one of them came with a `srvModified`. A site whose uploaders
    use v1 keeps its v1 paging, which also sees edits made through v1 (the careportal's).
    """
    if not access.usable:
        return Strategy(False, True, f"v1 paging: {access.reason}")
    if not collection.paged:
        return Strategy(True, True, "v3 history, and v1 read whole (profiles cannot be counted)")
    if server_count is None:
        return Strategy(
            True, True, "v3 history and v1 paging: the server cannot count documents through v1"
        )
    if held is None or held.documents < server_count:
        return Strategy(
            True,
            True,
            f"v3 history and v1 paging: v1 counts {server_count:,} documents, the lake holds "
            f"{held.documents if held else 0:,} (documents uploaded through v1 never appear in "
            "v3 history)",
        )
    if held.outside_history:
        return Strategy(
            True,
            True,
            f"v3 history and v1 paging: {held.outside_history:,} of the {held.documents:,} "
            "documents the lake holds were uploaded through v1, which v3 history does not show",
        )
    return Strategy(
        True,
        False,
        f"v3 history alone: it covers all {server_count:,} documents v1 counts",
    )


@dataclass(frozen=True)
class Held:
    """What the lake holds of a site's collection."""

    documents: int  # distinct documents, rows and rejects
    outside_history: int  # rows with no srvModified: uploaded through v1, unseen by v3 history


def held_documents(table: Table, rejects: Table, site_id: str, collection: str) -> int:
    """How many of the site's documents the lake holds: distinct ids in rows and rejects, plus
    rejects that had no id (what Nightscout's count of the collection should not exceed)."""
    ids = table.scan(
        row_filter=EqualTo("site_id", site_id), selected_fields=("source_id",)
    ).to_arrow()
    rejected = rejects.scan(
        row_filter=And(EqualTo("site_id", site_id), EqualTo("collection", collection)),
        selected_fields=("source_id",),
    ).to_arrow()
    rejected_ids = rejected.column("source_id")
    known = pa.chunked_array(
        [
            *pc.cast(ids.column("source_id"), pa.large_string()).chunks,
            *pc.cast(pc.drop_null(rejected_ids), pa.large_string()).chunks,
        ],
        type=pa.large_string(),
    )
    return len(pc.unique(known)) + int(rejected_ids.null_count)


def held_in_lake(table: Table, rejects: Table, site_id: str, collection: str) -> Held:
    outside = table.scan(
        row_filter=And(EqualTo("site_id", site_id), IsNull("srv_modified_at")),
        selected_fields=("source_id",),
    ).to_arrow()
    return Held(held_documents(table, rejects, site_id, collection), outside.num_rows)


class Ingestor:
    """Loads one or more collections for one or more sites into the raw tables."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        clients: dict[str, NightscoutClient] | None = None,
        progress: ProgressCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._sleep = sleep  # how a commit retry waits (tests pass a fake)
        self.catalog = catalog or load_lake_catalog(settings)
        self.stage = Stage.for_settings(settings)
        self._clients = clients or {}
        self.progress: ProgressCallback = progress or _no_progress
        self.lookback = timedelta(hours=settings.nightscout.v1_lookback_hours)
        self._failures: dict[str, NightscoutError] = {}  # the first error of each failed site

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
        failed: set[str] = set()
        for name in collections:
            healthy = [s for s in sites if s.id not in failed]
            loaded = self._load_collection(name, healthy, since=since, until=until)
            failed |= {r.site_id for r in loaded if r.error}
            reports.extend(loaded)
            # a site that failed is not asked again in this run; say so for each collection
            reports.extend(
                LoadReport(s.id, name, error="not read: the site failed earlier in this run")
                for s in sites
                if s.id in failed and s.id not in {r.site_id for r in loaded}
            )
        if self._failures and len(sites) == 1:
            raise self._failures[sites[0].id]  # one site: its own error says it best
        if any(r.error for r in reports):
            raise SitesFailedError(reports)
        incomplete = [
            r
            for r in reports
            if r.server_count is not None and (r.lake_count or 0) < r.server_count
        ]
        if incomplete:
            raise IncompleteLoadError(incomplete)
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
                started = time.perf_counter()
                state = _SiteState(
                    ParsedBatch(name, site_id),
                    LoadReport(site_id, name, api="stage"),
                    None,
                    "stage",
                )
                for staged in self.stage.pages(site_id, name):
                    state.report.pages += 1
                    state.report.documents += len(staged.docs)
                    state.batch.add(staged.docs, now_ms=_ms(datetime.now(UTC)))
                    self.progress(site_id, name, len(staged.docs))
                    if len(state.batch) >= self.settings.nightscout.commit_rows:
                        self._commit(table, rejects, state, load_id)
                self._commit(table, rejects, state, load_id)
                state.report.seconds = time.perf_counter() - started
                self.progress(site_id, name, 0, True)
                reports.append(state.report)
        return reports

    # ---- one collection ------------------------------------------------------------------------

    def _load_collection(
        self, name: str, sites: list[SiteConfig], *, since: datetime | None, until: datetime | None
    ) -> list[LoadReport]:
        collection = get_collection(name)
        table = ensure_raw_table(self.catalog, name)
        rejects = ensure_rejects_table(self.catalog)
        load_id = new_load_id()
        run_started = datetime.now(UTC)
        reports = {s.id: LoadReport(s.id, name) for s in sites}
        sequences = dict.fromkeys(reports, 0)
        started = time.perf_counter()

        apis: dict[str, set[str]] = {s.id: set() for s in sites}  # the APIs each site was read with

        def load(
            pass_sites: list[SiteConfig],
            source: Callable[[NightscoutClient, dict[str, Any]], PageSource],
            api: str,
        ) -> None:
            for site in pass_sites:
                apis[site.id].add(api)
            self._pass(table, rejects, name, pass_sites, reports, sequences, load_id, source)

        if since is not None or until is not None:
            load(sites, lambda client, cursor: window_pages(client, collection, since, until), "v1")
            for site in sites:
                reports[
                    site.id
                ].reason = "an explicit window (--since/--until), read with v1; cursor untouched"
        else:

            def healthy(site: SiteConfig) -> bool:
                return reports[site.id].error is None

            def asks(site: SiteConfig, question: Callable[[], bool]) -> bool:
                """A question put to the site; if the site fails, that is its report's error."""
                try:
                    return question()
                except NightscoutError as exc:
                    reports[site.id].error = str(exc)
                    self._failures.setdefault(site.id, exc)
                    return False

            by_v3 = [s for s in sites if asks(s, partial(self._v3_usable, s))]
            load(by_v3, lambda client, cursor: v3_pages(client, collection, cursor), "v3")
            by_v1 = [
                s
                for s in sites
                if healthy(s)
                and asks(s, partial(self._needs_v1, s, collection, table, rejects, reports[s.id]))
            ]

            def since_cursor(client: NightscoutClient, cursor: dict[str, Any]) -> PageSource:
                return v1_pages(
                    client, collection, cursor, lookback=self.lookback, run_started=run_started
                )

            load(by_v1, since_cursor, "v1")
            short = [
                s for s in by_v1 if healthy(s) and self._short(s, table, rejects, reports[s.id])
            ]
            if short:  # documents v1 paging missed (uploaded late, older than the look-back)

                def whole_history(client: NightscoutClient, cursor: dict[str, Any]) -> PageSource:
                    return v1_pages(
                        client, collection, cursor, lookback=None, run_started=run_started
                    )

                load(short, whole_history, "v1")
                for site in short:
                    reports[
                        site.id
                    ].reason += (
                        "; the lake was short after paging, so the whole v1 history was read again"
                    )
            for site in filter(healthy, sites):  # what the lake holds now, where not yet known
                if reports[site.id].lake_count is None or site in short:
                    self._short(site, table, rejects, reports[site.id])
        elapsed = time.perf_counter() - started
        for site in sites:
            reports[site.id].api = "+".join(sorted(apis[site.id]))
            reports[site.id].seconds = elapsed
            self.progress(site.id, name, 0, True)
        return [reports[s.id] for s in sites]

    def _v3_usable(self, site: SiteConfig) -> bool:
        return self.client(site).v3_access().usable

    def _needs_v1(
        self,
        site: SiteConfig,
        collection: Collection,
        table: Table,
        rejects: Table,
        report: LoadReport,
    ) -> bool:
        """Whether v1 must be read this run; notes the count and the reason on the report.

        The count is taken before v1 is read, so a document uploaded while we read can only make
        the lake hold more than the count, never look short.
        """
        client = self.client(site)
        if collection.paged:
            report.server_count = client.count(collection)
        access = client.v3_access()
        held = (
            held_in_lake(table, rejects, site.id, collection.name)
            if access.usable and report.server_count is not None
            else None
        )
        strategy = choose_strategy(access, collection, report.server_count, held)
        report.reason = strategy.reason
        return strategy.v1

    def _short(self, site: SiteConfig, table: Table, rejects: Table, report: LoadReport) -> bool:
        """Compare the lake with v1's count; record what the lake holds. True if it holds fewer."""
        report.lake_count = held_documents(table, rejects, site.id, report.collection)
        return report.server_count is not None and report.lake_count < report.server_count

    def _pass(
        self,
        table: Table,
        rejects: Table,
        name: str,
        sites: list[SiteConfig],
        reports: dict[str, LoadReport],
        sequences: dict[str, int],
        load_id: str,
        source: Callable[[NightscoutClient, dict[str, Any]], PageSource],
    ) -> None:
        """Download the sites concurrently through `source`; parse and commit here, in order."""
        if not sites:
            return
        items: queue.Queue[_Item] = queue.Queue(maxsize=64)
        states = {
            s.id: _SiteState(ParsedBatch(name, s.id), reports[s.id], site_cursor(table, s.id))
            for s in sites
        }
        starting_cursors = {site_id: dict(state.cursor or {}) for site_id, state in states.items()}
        stop = threading.Event()

        def fetch(site: SiteConfig) -> None:
            try:
                client = self.client(site)
                for page, cursor in source(client, starting_cursors[site.id]):
                    if stop.is_set():
                        return
                    compressed = Stage.compress(page.body) if page.body else b""
                    items.put(_Item(site.id, page, compressed, cursor))
                items.put(_Item(site.id))
            except BaseException as exc:  # handed to the committing thread, which raises it
                items.put(_Item(site.id, error=exc))

        workers = [
            threading.Thread(target=fetch, args=(s,), daemon=True, name=f"fetch-{s.id}")
            for s in sites
        ]
        pending_sites = set(states)
        concurrency = max(1, self.settings.nightscout.site_concurrency)
        started = 0
        for worker in workers[:concurrency]:
            worker.start()
            started += 1
        try:
            while pending_sites:
                item = items.get()
                state = states[item.site_id]
                if item.error is not None:
                    if not isinstance(item.error, NightscoutError):
                        raise item.error  # the lake's or Cascade's own failure stops the run
                    # This site's failure is its own: drop what it read since its last commit
                    # (its cursor covers only committed pages) and let the other sites go on.
                    state.report.error = str(item.error)
                    self._failures.setdefault(item.site_id, item.error)
                    state.batch = ParsedBatch(name, item.site_id)
                    state.unlanded = []
                    pending_sites.discard(item.site_id)
                    if started < len(workers):
                        workers[started].start()
                        started += 1
                    continue
                if item.page is None:
                    self._commit(table, rejects, state, load_id)
                    pending_sites.discard(item.site_id)
                    if started < len(workers):
                        workers[started].start()
                        started += 1
                    continue
                page = item.page
                state.api = page.api
                if page.body:
                    state.report.pages += 1
                    sequences[item.site_id] += 1
                    state.unlanded.append(
                        _UnlandedPage(sequences[item.site_id], page.api, item.compressed)
                    )
                state.report.documents += len(page.docs)
                state.batch.add(page.docs, now_ms=_ms(datetime.now(UTC)))
                if item.cursor is not None:
                    part, value = item.cursor
                    state.cursor = {**(state.cursor or {}), part: value}
                self.progress(item.site_id, name, len(page.docs))
                if len(state.batch) >= self.settings.nightscout.commit_rows:
                    self._commit(table, rejects, state, load_id)
        finally:
            stop.set()
            while not items.empty():  # unblock fetchers waiting on a full queue
                items.get_nowait()

    def _commit(self, table: Table, rejects_table: Table, state: _SiteState, load_id: str) -> None:
        """Write the site's batch and cursor. If another writer commits first, re-read the tables
        and merge again: the upsert's look-up of existing rows must see the other writer's."""
        batch = state.batch
        retrying = Retrying(
            retry=retry_if_exception_type(CommitFailedException),
            stop=stop_after_attempt(COMMIT_ATTEMPTS),
            # a random pause, longer after each lost race, so racing writers fall out of step
            wait=lambda retry: random.uniform(0.05, 0.25) * retry.attempt_number,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:  # another writer committed first
                        table.refresh()
                        rejects_table.refresh()
                    result = self._write(
                        table,
                        rejects_table,
                        state,
                        load_id,
                        before_commit=lambda: self._land(state, load_id),
                    )
        except CommitFailedException:
            raise LakeError(
                f"raw.{batch.collection}: other writers kept committing first "
                f"({COMMIT_ATTEMPTS} attempts); nothing was half-written, run it again"
            ) from None
        report = state.report
        report.rejected += len(batch.rejects)
        report.inserted += result.inserted
        report.replaced += result.replaced
        report.unchanged += result.unchanged + result.stale + result.superseded
        report.commits += 1
        report.cursor = state.cursor
        state.batch = ParsedBatch(batch.collection, batch.site_id)
        state.unlanded = []  # landed if the commit wrote anything; not needed if it did not

    def _land(self, state: _SiteState, load_id: str) -> None:
        """Land the batch's pages in stage (once, even when the commit is retried)."""
        batch = state.batch
        for page in state.unlanded:
            self.stage.land(
                batch.site_id, batch.collection, load_id, page.sequence, page.api, page.compressed
            )
        state.unlanded = []

    @staticmethod
    def _write(
        table: Table,
        rejects_table: Table,
        state: _SiteState,
        load_id: str,
        before_commit: Callable[[], None],
    ) -> UpsertResult:
        batch = state.batch
        ingested_at_us = int(time.time() * 1_000_000)
        if batch.rejects:
            append_rejects(
                rejects_table,
                batch.site_id,
                rejects_to_arrow(batch.rejects, ingested_at_us=ingested_at_us, load_id=load_id),
                before_commit=before_commit,
            )
        rows = to_arrow(
            batch.collection,
            batch.rows,
            ingested_at_us=ingested_at_us,
            load_id=load_id,
            api=state.api or "v1",
        )
        return upsert(
            table,
            batch.site_id,
            rows,
            cursor=state.cursor,
            snapshot_properties={"cascade.load_id": load_id},
            before_commit=before_commit,
        )


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
    """Run one load as `cascade ingest` does.

    Raises `IncompleteLoadError` (after committing what was read) when a site's lake holds fewer
    documents than its v1 API counts.
    """
    for name in collections:
        get_collection(name)
    if from_stage:
        ingestor = Ingestor(settings, progress=progress)
        ids = site_ids or [s.id for s in settings.nightscout.sites()] or ingestor.stage.site_ids()
        return ingestor.rebuild_from_stage(ids, collections)
    sites = (
        [settings.nightscout.site(i) for i in site_ids] if site_ids else settings.nightscout.sites()
    )
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
