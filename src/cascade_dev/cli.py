"""The development platform's commands, plugged into `cascade` (entry point group `cascade.cli`).

`cascade demo`, `cascade stack ...` and `cascade nightscout serve` live here, so that the product's
CLI never imports its development tools: installing Cascade brings them along as a plugin.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from cascade.cli.output import console, errors, fail
from cascade.cli.render import ProgressRows
from cascade.config import get_settings
from cascade.exceptions import CascadeError
from cascade.transform.project import domain_constants

stack_app = typer.Typer(
    help="The lakehouse services (PostgreSQL, MinIO, Nessie, Trino) as local processes, for development and CI.",
    no_args_is_help=True,
)
nightscout_app = typer.Typer(
    help="Tools for Nightscout itself, such as a fake server for trying Cascade.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the development commands to the `cascade` application."""
    app.command()(demo)
    app.add_typer(stack_app, name="stack")
    app.add_typer(nightscout_app, name="nightscout")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def demo(
    subjects: Annotated[int, typer.Option(help="How many synthetic people.", min=1, max=20)] = 3,
    days: Annotated[
        int,
        typer.Option(
            help="Days of data per person.",
            min=domain_constants().window_days,
            max=365,
        ),
    ] = domain_constants().window_days,
    seed: Annotated[int, typer.Option(help="Random seed for the synthetic data.")] = 0,
) -> None:
    """Run everything on this machine: a fake Nightscout → ingest over HTTP → dbt → metrics and AGP reports.

    Uses its own lake under CASCADE_HOME/demo, so a real lake is never touched.
    """
    from cascade_dev.demo import run_demo

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
        raise fail(exc) from None
    domain = domain_constants()
    table = Table(
        title=f"Headline metrics, {domain.window_days} days to the last day with data (% of readings)",
        caption="targets: "
        + ", ".join(
            f"{label} {domain.consensus_targets[metric][0]} {domain.consensus_targets[metric][1]:g}"
            for label, metric in (
                ("TIR", "tir_pct"),
                ("TBR", "tbr_pct"),
                ("TAR", "tar_pct"),
                ("CV", "cv_pct"),
            )
        )
        + f", % active >= {domain.min_cgm_active_pct:g}",
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
    """The stack narrates what it installs and starts (the CLI's handler prints it).

    At least INFO: with --debug, `configure_logging` has already opened it to DEBUG.
    """
    import logging

    stack_log = logging.getLogger("cascade_dev.stack")
    if stack_log.getEffectiveLevel() > logging.INFO:
        stack_log.setLevel(logging.INFO)


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
    from cascade_dev.stack import up

    _stack_logging()
    try:
        statuses = up(get_settings(), services)
    except CascadeError as exc:
        raise fail(exc) from None
    console.print(_stack_table(statuses, "stack up"))


@stack_app.command("down")
def stack_down(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to stop; default all.")
    ] = None,
) -> None:
    """Stop only the services this stack started; data stays under CASCADE_STACK_HOME."""
    from cascade_dev.stack import down

    _stack_logging()
    try:
        statuses = down(get_settings(), services)
    except CascadeError as exc:
        raise fail(exc) from None
    console.print(_stack_table(statuses, "stack down"))


@stack_app.command("status")
def stack_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether each service is running and healthy, where it listens and where its log is."""
    from cascade_dev.stack import status

    try:
        statuses = status(get_settings())
    except CascadeError as exc:
        raise fail(exc) from None
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
    from cascade_dev.stack import logs

    try:
        sys.stdout.write(logs(get_settings(), service, lines=lines))
    except CascadeError as exc:
        raise fail(exc) from None


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
    from cascade_dev.fake_nightscout.server import serve

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
