"""The `cascade` command line: a thin shell over the library, one command per job."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cascade.cli.render import ProgressRows, ingest_table, status_tables
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
nightscout_app = typer.Typer(
    help="Tools for Nightscout itself, such as a fake server for trying Cascade.",
    no_args_is_help=True,
)
app.add_typer(nightscout_app, name="nightscout")
stack_app = typer.Typer(
    help="The lakehouse services (PostgreSQL, MinIO, Nessie, Trino) as local processes, for development and CI.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")

console = Console()
errors = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class _Options:
    debug = False  # --debug: tracebacks for every failure


@app.callback()
def _global_options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="CASCADE_DEBUG",
            help="When something fails, show the full traceback as well as the one-line reason.",
        ),
    ] = False,
) -> None:
    _Options.debug = debug


def _report_failure(exc: BaseException) -> None:
    """One line naming what to fix; the traceback too with --debug."""
    from cascade.cli.errors import explain

    if _Options.debug:
        errors.print_exception(show_locals=False)
    errors.print(f"[bold red]error:[/] {escape(explain(exc))}", highlight=False, soft_wrap=True)


def _fail(exc: CascadeError) -> typer.Exit:
    _report_failure(exc)
    return typer.Exit(code=1)


def _fail_with_reports(exc: CascadeError) -> typer.Exit:
    """An ingest that failed for some sites still loaded the others: show what it did."""
    reports = getattr(exc, "reports", None)
    if reports:
        console.print(ingest_table(reports))
    return _fail(exc)


def _day(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (use YYYY-MM-DD or an ISO time)", param_hint=option
        ) from None
    if isinstance(parsed, date) and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@app.command()
def ingest(
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            "-s",
            help="Site id to load (repeat for several). Default: every configured site.",
        ),
    ] = None,
    collections: Annotated[
        str, typer.Option(help="Comma-separated collections to load.")
    ] = ",".join(RAW_COLLECTIONS),
    since: Annotated[
        str | None,
        typer.Option(
            help="Re-read events from this date (UTC) on. Leaves the incremental cursor alone."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Re-read events before this date (UTC). Leaves the cursor alone."),
    ] = None,
    from_stage: Annotated[
        bool,
        typer.Option(
            "--from-stage",
            help="Rebuild the raw tables from the pages landed in stage, without asking Nightscout.",
        ),
    ] = False,
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
        window = _day(since, "--since"), _day(until, "--until")
        with ProgressRows(errors) as rows:
            reports = run_ingest(
                settings,
                site_ids=site,
                collections=names,
                since=window[0],
                until=window[1],
                from_stage=from_stage,
                progress=rows.ingest,
            )
    except CascadeError as exc:
        raise _fail_with_reports(exc) from None
    console.print(ingest_table(reports))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
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
    for table in status_tables(statuses):
        console.print(table)


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(help='SQL over the lake, e.g. "select count(*) from raw.entries".')
    ],
    output: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """Run ad-hoc SQL over the lake with DuckDB; tables are named namespace.table (raw.entries)."""
    from cascade.serve.query import run_query

    try:
        columns, rows = run_query(get_settings(), sql)
    except CascadeError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.json:
        sys.stdout.write(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=2)
            + "\n"
        )
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


@app.command()
def transform(
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            "-s",
            help="dbt selector(s), e.g. fct_glucose_readings+ or path:models/gold.",
        ),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh", help="Rebuild incremental models from scratch (same result, slower)."
        ),
    ] = False,
) -> None:
    """Build the dbt project (bronze → silver → gold → marts) over the raw tables, with its tests.

    Every built model becomes an Iceberg table of the lake (silver.*, gold.*, marts.*). On the local profile dbt runs on DuckDB and the tables are written back (unchanged ones get no new snapshot); on the lakehouse profile dbt runs on Trino and writes to the Nessie branch NESSIE_REF (main: target prod, dev: target dev). A failing model or test stops the run and names itself.
    """
    from cascade.transform.runner import transform as run_transform

    try:
        with ProgressRows(errors) as rows:
            rows.step("dbt build")
            result = run_transform(get_settings(), select=select, full_refresh=full_refresh)
    except CascadeError as exc:
        raise _fail(exc) from None
    console.print(f"[green]transform ok[/]: {result.summary()}")


@app.command()
def run(
    site: Annotated[
        list[str] | None, typer.Option("--site", help="Only these sites (repeatable).")
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from scratch.")
    ] = False,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote",
            help="Lakehouse: when every test passed, merge NESSIE_REF (e.g. dev) into main, atomically.",
        ),
    ] = False,
) -> None:
    """The whole job: ingest every site, then build and test every dbt model. Stops at the first failure and says which step, model or test failed and why.

    On the lakehouse profile, `NESSIE_REF=dev cascade run --promote` is write-audit-publish: everything lands and is tested on dev, and main receives it in one Nessie merge only if the whole run passed.
    """
    from cascade.pipeline import run_pipeline

    try:
        with ProgressRows(errors) as rows:
            result = run_pipeline(
                get_settings(),
                site_ids=site,
                full_refresh=full_refresh,
                promote_to_main=promote,
                on_ingest_progress=rows.ingest,
                on_stage=rows.stage,
            )
    except CascadeError as exc:
        raise _fail_with_reports(exc) from None
    console.print(ingest_table(result.loads))
    loaded = sum(r.inserted + r.replaced for r in result.loads)
    console.print(
        f"[green]run ok[/]: {loaded:,} records ingested or updated; {result.transform.summary()}"
    )
    if result.promotion is not None:
        console.print(f"[green]promote ok[/]: {result.promotion.summary()}")


@app.command("promote")
def promote_branch(
    source: Annotated[
        str | None, typer.Option("--from", help="The branch to merge; default NESSIE_REF.")
    ] = None,
    target: Annotated[str, typer.Option("--into", help="The branch that receives it.")] = "main",
) -> None:
    """Merge a Nessie branch (default NESSIE_REF, e.g. dev) into main in one atomic commit (lakehouse profile).

    The write-audit-publish step: build and test on dev (`NESSIE_REF=dev cascade run`), then promote, then `cascade publish` from main. Nessie refuses, and nothing is merged, when main changed the same tables since.
    """
    from cascade.lake.branches import promote

    try:
        promotion = promote(get_settings(), source=source, target=target)
    except CascadeError as exc:
        raise _fail(exc) from None
    console.print(f"[green]promote ok[/]: {promotion.summary()}")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


@app.command()
def demo(
    subjects: Annotated[int, typer.Option(help="How many synthetic people.", min=1, max=20)] = 3,
    days: Annotated[int, typer.Option(help="Days of data per person.", min=14, max=365)] = 14,
    seed: Annotated[int, typer.Option(help="Random seed for the synthetic data.")] = 0,
) -> None:
    """Run everything on this machine: a fake Nightscout → ingest over HTTP → dbt → metrics and AGP reports.

    Uses its own lake under CASCADE_HOME/demo, so a real lake is never touched.
    """
    from cascade.demo import run_demo

    try:
        with ProgressRows(errors) as rows:
            result = run_demo(
                get_settings(),
                subjects=subjects,
                days=days,
                seed=seed,
                on_ingest_progress=rows.ingest,
                on_stage=rows.stage,
            )
    except CascadeError as exc:
        raise _fail(exc) from None
    table = Table(
        title="Headline metrics, 14 days to the last day with data (% of readings)",
        caption="targets: TIR > 70, TBR < 4, TAR < 25, CV <= 36, % active >= 70",
    )
    for column in ("subject", "ends", "active", "TIR", "TBR", "TAR", "GMI", "CV", "GRI"):
        table.add_column(
            column, justify="left" if column in ("subject", "ends") else "right", no_wrap=True
        )
    for row in result.headline:
        table.add_row(
            row["site_id"],
            str(row["window_end_date"]),
            _pct(row["cgm_active_pct"]),
            _pct(row["tir_pct"]),
            _pct(row["tbr_pct"]),
            _pct(row["tar_pct"]),
            _pct(row["gmi_pct"]),
            _pct(row["cv_pct"]),
            f"{_pct(row['gri'])} {row['gri_zone'] or ''}",
        )
    console.print(table)
    for site_id, path in result.reports.items():
        console.print(f"AGP report for {site_id}: [link=file://{path}]{path}[/link]")
    console.print(
        f'\nExplore the demo lake: CASCADE_HOME={result.home} cascade query "select * from marts.mrt_daily_summary limit 10"'
    )


@app.command()
def report(
    site: Annotated[str, typer.Option("--site", help="Site id (one person).")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .html, or .pdf for a PDF.")],
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject", help="Subject id; in Cascade a site is one person, so this equals --site."
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--end", help="Last local date of the window (default: the last day with readings)."
        ),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", help="Window length in days (the consensus period is 14).")
    ] = 14,
) -> None:
    """Write the one-page AGP report: metrics against consensus targets, TIR bar, AGP curve, daily profiles."""
    from cascade.serve.report import render_report

    if subject is not None and subject != site:
        raise typer.BadParameter(
            f"subject {subject!r} is not site {site!r}: each Nightscout site is one person",
            param_hint="--subject",
        )
    end_day = _day(end, "--end")
    try:
        path = render_report(
            get_settings(),
            site_id=site,
            end=end_day.date() if end_day else None,
            days=days,
            out=out,
        )
    except CascadeError as exc:
        raise _fail(exc) from None
    console.print(f"report written: {path}")


@app.command()
def doctor() -> None:
    """Check the configuration and every service the active profile needs, and say exactly what is wrong."""
    from cascade.doctor import run_checks

    checks = run_checks()
    table = Table(title="cascade doctor")
    for column in ("check", "", "detail"):
        table.add_column(column)
    for check in checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail)
    console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(code=1)


def _stack_table(statuses: list[Any], title: str) -> Table:
    table = Table(title=title)
    for column in ("service", "version", "state", "pid", "listens on", "log"):
        table.add_column(column)
    for s in statuses:
        colour = "green" if s.healthy else "yellow" if s.running else "red"
        table.add_row(
            s.name,
            s.version,
            f"[{colour}]{s.state}[/]",
            str(s.pid or "-"),
            s.endpoint,
            str(s.log_path),
        )
    return table


def _stack_logging() -> None:
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("cascade.stack")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(RichHandler(console=errors, show_path=False, show_time=False))
    logging.getLogger("httpx").setLevel(logging.WARNING)


@stack_app.command("up")
def stack_up(
    services: Annotated[
        list[str] | None,
        typer.Argument(
            help="Services to start (with their dependencies); default all: postgres minio nessie trino."
        ),
    ] = None,
) -> None:
    """Install what is missing (cached in CASCADE_DOWNLOAD_CACHE), start what is not running, wait until healthy."""
    from cascade.stack import load_stack_settings, up

    _stack_logging()
    try:
        statuses = up(load_stack_settings(), services)
    except CascadeError as exc:
        raise _fail(exc) from None
    console.print(_stack_table(statuses, "stack up"))


@stack_app.command("down")
def stack_down(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to stop; default all.")
    ] = None,
) -> None:
    """Stop only the services this stack started; data stays under CASCADE_STACK_HOME."""
    from cascade.stack import down, load_stack_settings

    _stack_logging()
    try:
        statuses = down(load_stack_settings(), services)
    except CascadeError as exc:
        raise _fail(exc) from None
    console.print(_stack_table(statuses, "stack down"))


@stack_app.command("status")
def stack_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether each service is running and healthy, where it listens and where its log is."""
    from cascade.stack import load_stack_settings, status

    try:
        statuses = status(load_stack_settings())
    except CascadeError as exc:
        raise _fail(exc) from None
    if as_json:
        sys.stdout.write(
            json.dumps(
                [
                    {
                        "service": s.name,
                        "version": s.version,
                        "running": s.running,
                        "healthy": s.healthy,
                        "pid": s.pid,
                        "endpoint": s.endpoint,
                        "log": str(s.log_path),
                    }
                    for s in statuses
                ],
                indent=2,
            )
            + "\n"
        )
        return
    console.print(_stack_table(statuses, "stack"))
    if not all(s.healthy for s in statuses):
        raise typer.Exit(code=1)


@stack_app.command("logs")
def stack_logs(
    service: Annotated[str, typer.Argument(help="postgres, minio, nessie or trino.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines from the end.")] = 100,
) -> None:
    """Print the end of a service's log."""
    from cascade.stack import load_stack_settings, logs

    try:
        sys.stdout.write(logs(load_stack_settings(), service, lines=lines))
    except CascadeError as exc:
        raise _fail(exc) from None


@app.command()
def publish(
    mart: Annotated[
        list[str] | None,
        typer.Option(
            "--mart",
            "-m",
            help="Only these marts (repeatable), e.g. mrt_daily_summary; default every marts.* table.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Republish marts whose snapshot is already published.")
    ] = False,
) -> None:
    """Copy the lake's marts into PostgreSQL (schema MARTS_SCHEMA) for BI, atomically for readers.

    Needs MARTS_DATABASE_URL on the local profile. Publishes only from Nessie's main branch on the lakehouse profile; a snapshot already published is skipped; provenance goes to <schema>._published.
    """
    from cascade.publish import publish as run_publish

    try:
        with ProgressRows(errors) as rows:
            rows.step("publishing marts to PostgreSQL")
            result = run_publish(get_settings(), marts=mart, force=force)
    except CascadeError as exc:
        raise _fail(exc) from None
    table = Table(title=f"marts in {result.schema} at {result.target}")
    for column in ("mart", "Iceberg snapshot", "rows", "status"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for item in result.marts:
        table.add_row(
            item.mart,
            str(item.snapshot_id),
            f"{item.rows:,}",
            f"published ({item.reason})" if item.published else "unchanged",
        )
    console.print(table)
    console.print(f"[green]publish ok[/]: {result.summary()}")


@nightscout_app.command("serve")
def nightscout_serve(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 1337,
    subjects: Annotated[
        int, typer.Option(help="How many people (one Nightscout site each).", min=1)
    ] = 3,
    days: Annotated[int, typer.Option(help="Days of history per person.", min=1)] = 14,
    interval_minutes: Annotated[
        int, typer.Option(help="CGM interval: 5 (Dexcom) or 1 (Libre 3).")
    ] = 5,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed serves the same data.")] = 0,
    api_secret: Annotated[
        str | None,
        typer.Option(
            envvar="FAKE_NIGHTSCOUT_API_SECRET", help="Lock the sites with this API secret."
        ),
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(help="Access token accepted for reads and JWT exchange (repeatable)."),
    ] = None,
    no_v3: Annotated[
        bool, typer.Option("--no-v3", help="Act like an old Nightscout without API v3.")
    ] = False,
    fault_rate: Annotated[
        float, typer.Option(help="Share of requests that fail on purpose (0-1).")
    ] = 0.0,
    fault_kinds: Annotated[
        str, typer.Option(help="Faults to draw from: slow,429,500,503,drop,malformed_json.")
    ] = "429,500,drop",
    clean: Annotated[
        bool,
        typer.Option(
            "--clean", help="Serve no broken records (no duplicates, bad clocks or bad types)."
        ),
    ] = False,
) -> None:
    """Serve synthetic Nightscout sites over real HTTP (API v1 and v3), for trying Cascade.

    Each person is a site at http://127.0.0.1:PORT/<site-id>. Point Cascade at them with NIGHTSCOUT_SITES, as the command prints.
    """
    from cascade.source.fake.server import serve

    if interval_minutes not in (1, 5):
        raise typer.BadParameter("use 1 or 5", param_hint="--interval-minutes")
    serve(
        port=port,
        subjects=subjects,
        days=days,
        interval_minutes=interval_minutes,
        seed=seed,
        api_secret=api_secret,
        tokens=token or [],
        v3_enabled=not no_v3,
        fault_rate=fault_rate,
        fault_kinds=[k for k in fault_kinds.split(",") if k],
        dirty=not clean,
    )


def main() -> None:
    """The `cascade` entry point: anything not already reported becomes one line and exit 1."""
    try:
        app()
    except Exception as exc:  # a full disk, a read-only home, a bug: never a bare traceback
        _report_failure(exc)
        raise SystemExit(1) from None
