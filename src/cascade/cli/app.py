"""The `cascade` command line: a thin shell over the library, one command per job."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cascade.config import get_settings
from cascade.exceptions import CascadeError
from cascade.lake.schemas import RAW_COLLECTIONS

app = typer.Typer(
    name="cascade",
    help=(
        "Cascade turns Nightscout diabetes data into an Iceberg lakehouse.\n\n"
        "Settings come from the environment (or a .env file): see .env.example.\n"
        "Start with `cascade demo`, or point NIGHTSCOUT_URL at a site and run `cascade ingest`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
nightscout_app = typer.Typer(help="Tools for Nightscout itself, such as a fake server for trying Cascade.", no_args_is_help=True)
app.add_typer(nightscout_app, name="nightscout")

console = Console()
errors = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _fail(exc: CascadeError) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(code=1)


def _day(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (use YYYY-MM-DD or an ISO time)", param_hint=option) from None
    if isinstance(parsed, date) and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@app.command()
def ingest(
    site: Annotated[list[str] | None, typer.Option("--site", "-s", help="Site id to load (repeat for several). Default: every configured site.")] = None,
    collections: Annotated[str, typer.Option(help="Comma-separated collections to load.")] = ",".join(RAW_COLLECTIONS),
    since: Annotated[str | None, typer.Option(help="Re-read events from this date (UTC) on. Leaves the incremental cursor alone.")] = None,
    until: Annotated[str | None, typer.Option(help="Re-read events before this date (UTC). Leaves the cursor alone.")] = None,
    from_stage: Annotated[bool, typer.Option("--from-stage", help="Rebuild the raw tables from the pages landed in stage, without asking Nightscout.")] = False,
) -> None:
    """Load Nightscout into the raw Iceberg tables, incrementally and idempotently.

    Without --since/--until each site resumes from its cursor: the v3 history feed where the server has it (so edits and deletions arrive), otherwise v1 date paging.

    Re-running never duplicates a record; malformed documents land in raw.rejects with the reason.
    """
    from cascade.lake.ingest import ingest as run_ingest

    names = tuple(c.strip() for c in collections.split(",") if c.strip())
    unknown = [n for n in names if n not in RAW_COLLECTIONS]
    if unknown:
        raise typer.BadParameter(
            f"unknown collection {', '.join(unknown)}; choose from {', '.join(RAW_COLLECTIONS)}",
            param_hint="--collections",
        )
    try:
        settings = get_settings()
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=None),
            TextColumn("{task.completed:,} docs"), TimeElapsedColumn(), console=errors, transient=False,
        ) as progress:
            tasks: dict[tuple[str, str], Any] = {}

            def on_progress(site_id: str, collection: str, count: int) -> None:
                key = (site_id, collection)
                if key not in tasks:
                    tasks[key] = progress.add_task(f"{site_id} {collection}", total=None)
                progress.advance(tasks[key], count)

            reports = run_ingest(
                settings, site_ids=site, collections=names, since=_day(since, "--since"),
                until=_day(until, "--until"), from_stage=from_stage, progress=on_progress,
            )
            for task in tasks.values():
                progress.update(task, total=progress.tasks[task].completed)
    except CascadeError as exc:
        raise _fail(exc) from None
    table = Table(title="ingest", show_lines=False)
    for column in ("site", "collection", "api", "documents", "new", "replaced", "unchanged", "rejected", "seconds"):
        table.add_column(column, justify="right" if column not in ("site", "collection", "api") else "left")
    for r in reports:
        table.add_row(r.site_id, r.collection, r.api, f"{r.documents:,}", f"{r.inserted:,}", f"{r.replaced:,}",
                      f"{r.unchanged:,}", f"{r.rejected:,}", f"{r.seconds:.1f}")
    console.print(table)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Show every lake table: rows, snapshots, last commit time and each site's cursor."""
    from cascade.lake.catalog import load_lake_catalog
    from cascade.lake.status import lake_status

    try:
        statuses = lake_status(load_lake_catalog(get_settings()))
    except CascadeError as exc:
        raise _fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps([s.as_dict() for s in statuses], indent=2) + "\n")
        return
    table = Table(title="lake")
    for column in ("table", "rows", "snapshots", "last commit (UTC)", "cursors"):
        table.add_column(column, justify="right" if column in ("rows", "snapshots") else "left")
    for s in statuses:
        cursor_text = "\n".join(f"{site}: {json.dumps(c)}" for site, c in s.cursors.items())
        table.add_row(s.table, f"{s.rows:,}", str(s.snapshots), s.last_commit_at or "-", cursor_text)
    console.print(table)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help='SQL over the lake, e.g. "select count(*) from raw.entries".')],
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
) -> None:
    """Run ad-hoc SQL over the lake with DuckDB; tables are named namespace.table (raw.entries)."""
    from cascade.serve.query import run_query

    try:
        columns, rows = run_query(get_settings(), sql)
    except CascadeError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=2) + "\n")
    elif output is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table()
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)


@nightscout_app.command("serve")
def nightscout_serve(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 1337,
    subjects: Annotated[int, typer.Option(help="How many people (one Nightscout site each).", min=1)] = 3,
    days: Annotated[int, typer.Option(help="Days of history per person.", min=1)] = 14,
    interval_minutes: Annotated[int, typer.Option(help="CGM interval: 5 (Dexcom) or 1 (Libre 3).")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed serves the same data.")] = 0,
    api_secret: Annotated[str | None, typer.Option(envvar="FAKE_NIGHTSCOUT_API_SECRET", help="Lock the sites with this API secret.")] = None,
    token: Annotated[list[str] | None, typer.Option(help="Access token accepted for reads and JWT exchange (repeatable).")] = None,
    no_v3: Annotated[bool, typer.Option("--no-v3", help="Act like an old Nightscout without API v3.")] = False,
    fault_rate: Annotated[float, typer.Option(help="Share of requests that fail on purpose (0-1).")] = 0.0,
    fault_kinds: Annotated[str, typer.Option(help="Faults to draw from: slow,429,500,503,drop,malformed_json.")] = "429,500,drop",
    clean: Annotated[bool, typer.Option("--clean", help="Serve no broken records (no duplicates, bad clocks or bad types).")] = False,
) -> None:
    """Serve synthetic Nightscout sites over real HTTP (API v1 and v3), for trying Cascade.

    Each person is a site at http://127.0.0.1:PORT/<site-id>. Point Cascade at them with NIGHTSCOUT_SITES, as the command prints.
    """
    from cascade.source.fake.server import serve

    if interval_minutes not in (1, 5):
        raise typer.BadParameter("use 1 or 5", param_hint="--interval-minutes")
    serve(
        port=port, subjects=subjects, days=days, interval_minutes=interval_minutes, seed=seed,
        api_secret=api_secret, tokens=token or [], v3_enabled=not no_v3,
        fault_rate=fault_rate, fault_kinds=[k for k in fault_kinds.split(",") if k], dirty=not clean,
    )


def main() -> None:
    app()
