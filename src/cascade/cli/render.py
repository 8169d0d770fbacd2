"""How the CLI draws its output: tables that read well at 80 columns and when piped, and
progress rows that stop once their work is done.

Rules the tables follow: names (lake tables, sites) are never wrapped or cut; numbers are never
split across lines while the table fits; only free text (cursors, times) wraps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cascade.lake.ingest import LoadReport
    from cascade.lake.status import TableStatus

# The sum every ingest row obeys (see LoadReport); printed under the table so nobody has to guess.
INGEST_SUM = "read = new + updated + unchanged + rejected"

STAGE_LABELS = {
    "transform": "dbt build (bronze → silver → gold → marts)",
    "generate": "generating synthetic people",
    "report": "AGP reports",
    "promote": "merging into main (Nessie)",
}


def _compact_table(title: str, *, caption: str | None = None) -> Table:
    """A table without side borders: two characters between columns, so more fits in 80."""
    return Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def _name_column(table: Table, header: str, names: Iterable[str]) -> None:
    """A column of names: never wrapped, never shortened (even if the table must overflow)."""
    widest = max((len(n) for n in names), default=0)
    table.add_column(header, no_wrap=True, min_width=max(widest, len(header)))


def _number_column(table: Table, header: str) -> None:
    table.add_column(header, justify="right", overflow="fold")


def _n(value: int) -> str:
    return f"{value:,}"


def _docs(count: float) -> str:
    return f"{int(count):,} doc" + ("" if int(count) == 1 else "s")


# ---- ingest ----------------------------------------------------------------------------------


def ingest_table(reports: Sequence[LoadReport], title: str = "ingest") -> Table:
    """One section per site, a row per raw table; `read = new + updated + unchanged + rejected`.

    The site heads its section instead of taking a column of its own, which is what lets the
    nine figures fit in 80 columns with every table name whole.
    """
    by_site: dict[str, list[LoadReport]] = {}
    for report in reports:  # ingest reports come collection by collection: regroup by site
        by_site.setdefault(report.site_id, []).append(report)
    caption = INGEST_SUM
    # the sum over every row goes in the caption: a footer row would widen the table
    if len(reports) > 1:
        read, new, updated, unchanged, rejected = (
            _n(sum(getattr(r, f) for r in reports))
            for f in ("documents", "inserted", "replaced", "unchanged", "rejected")
        )
        caption += f"\nin all: {read} = {new} + {updated} + {unchanged} + {rejected}"

    table = _compact_table(title, caption=caption)
    _name_column(
        table, "site / table", [*by_site, *(_indent(f"raw.{r.collection}") for r in reports)]
    )
    table.add_column("api", overflow="fold")
    for header in ("read", "new", "updated", "unchanged", "rejected"):
        _number_column(table, header)
    _number_column(table, "secs")
    for site_id, site_reports in by_site.items():
        table.add_row(Text(site_id, style="bold"))
        for i, r in enumerate(site_reports):
            table.add_row(
                _indent(f"raw.{r.collection}"),
                Text("FAILED", style="bold red") if getattr(r, "error", None) else (r.api or "-"),
                _n(r.documents),
                _n(r.inserted),
                _n(r.replaced),
                _n(r.unchanged),
                _n(r.rejected),
                f"{r.seconds:.1f}",
                end_section=i == len(site_reports) - 1,
            )
    return table


def _indent(name: str) -> str:
    return f"  {name}"


# ---- status ----------------------------------------------------------------------------------


def _utc(iso: str | None) -> str:
    """`2024-05-01T12:34:56+00:00` → `2024-05-01 12:34:56` (the header says UTC)."""
    if not iso:
        return "-"
    return iso.replace("T", " ").removesuffix("+00:00").removesuffix("Z")


_MS_2000, _MS_2100 = 946_684_800_000, 4_102_444_800_000


def _cursor_value(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {_cursor_value(v)}" for k, v in value.items()) + ")"
    if isinstance(value, int) and not isinstance(value, bool) and _MS_2000 <= value < _MS_2100:
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")  # epoch ms
    return str(value)


def cursor_text(cursor: dict[str, Any]) -> str:
    """A site's cursor, one line per API: `v3 srv_modified 2024-05-01 12:34:56`."""
    legacy_api = cursor.get("api")  # cursors written before the per-API layout
    if legacy_api in ("v1", "v3"):
        cursor = {legacy_api: {k: v for k, v in cursor.items() if k != "api"}}
    lines = []
    for key, value in cursor.items():
        if isinstance(value, dict):
            lines.append(f"{key} " + ", ".join(f"{k} {_cursor_value(v)}" for k, v in value.items()))
        else:
            lines.append(f"{key} {_cursor_value(value)}")
    return "\n".join(lines) or "-"


def status_tables(statuses: Sequence[TableStatus]) -> list[Table]:
    """The lake's tables (rows, snapshots, last commit), then the sites' cursors if any."""
    lake = _compact_table("lake")
    _name_column(lake, "table", [s.table for s in statuses])
    _number_column(lake, "rows")
    _number_column(lake, "snapshots")
    lake.add_column("last commit (UTC)", overflow="fold")
    for s in statuses:
        lake.add_row(s.table, _n(s.rows), _n(s.snapshots), _utc(s.last_commit_at))
    tables = [lake]
    cursors = [(s.table, site, c) for s in statuses for site, c in sorted(s.cursors.items())]
    if cursors:
        table = _compact_table("cursors (where the next ingest resumes)")
        _name_column(table, "table", [t for t, _, _ in cursors])
        _name_column(table, "site", [site for _, site, _ in cursors])
        table.add_column("cursor", overflow="fold")
        for name, site, cursor in cursors:
            table.add_row(
                name, site, cursor_text(cursor) if isinstance(cursor, dict) else str(cursor)
            )
        tables.append(table)
    return tables


# ---- progress --------------------------------------------------------------------------------


class DocumentsColumn(ProgressColumn):
    """`4,032 docs` for rows that count documents; nothing at all for rows that don't."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("counts_documents"):
            return Text("")
        return Text(_docs(task.completed), style="progress.download")


class ProgressRows:
    """Progress rows on `console` (stderr): one per ingested site and collection, one per stage.

    A row stops (spinner → ✓, timer frozen) as soon as its work is done: an ingest row when the
    ingest says `done=True`, a stage row when the next stage starts, and every row still open when
    the block ends without error. When `console` is not a terminal (piped, CI logs) nothing
    animates: each row is printed once, as one plain line, when it finishes.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal and not console.is_dumb_terminal
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            DocumentsColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self._ingest_rows: dict[tuple[str, str], TaskID] = {}
        self._stage_row: TaskID | None = None

    def __enter__(self) -> ProgressRows:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            for task in self.progress.tasks:
                self._finish(task.id)
        else:  # freeze the timers; the error says what failed
            for task in self.progress.tasks:
                if not task.finished:
                    self.progress.stop_task(task.id)
        self.progress.stop()

    def _task(self, task_id: TaskID) -> Task:
        return next(t for t in self.progress.tasks if t.id == task_id)

    def _finish(self, task_id: TaskID) -> None:
        task = self._task(task_id)
        if task.finished:
            return
        # total = completed marks it finished: the spinner shows ✓ and the timer stops
        self.progress.update(task_id, total=task.completed)
        self.progress.stop_task(task_id)
        if not self.live:
            task = self._task(task_id)
            seconds = task.finished_time or 0.0
            counted = _docs(task.completed) if task.fields.get("counts_documents") else "done"
            self.console.print(
                f"{task.description}: {counted} in {seconds:.1f}s", markup=False, highlight=False
            )

    def ingest(self, site_id: str, collection: str, documents: int, done: bool = False) -> None:
        """The ingest progress callback (`cascade.lake.ingest.ProgressCallback`)."""
        key = (site_id, collection)
        if key not in self._ingest_rows:
            self._ingest_rows[key] = self.progress.add_task(
                f"ingest {site_id} {collection}", total=None, counts_documents=True
            )
        task_id = self._ingest_rows[key]
        if documents:
            self.progress.advance(task_id, documents)
        if done:
            self._finish(task_id)

    def step(self, label: str) -> None:
        """Start a stage row (a step with no document count), finishing the previous one."""
        if self._stage_row is not None:
            self._finish(self._stage_row)
            self._stage_row = None
        self._stage_row = self.progress.add_task(label, total=None)

    def stage(self, stage: str) -> None:
        """The pipeline's `on_stage` callback; the ingest stage shows its own rows."""
        if stage == "ingest":
            if self._stage_row is not None:
                self._finish(self._stage_row)
                self._stage_row = None
            return
        self.step(STAGE_LABELS.get(stage, stage))
