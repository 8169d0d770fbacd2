"""What every command shares: the two consoles, one-line failures, and option parsing."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from enum import StrEnum

import typer
from rich.console import Console
from rich.markup import escape

from cascade.cli.render import ingest_table
from cascade.exceptions import CascadeError

console = Console()
errors = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class Options:
    debug = False  # --debug: tracebacks for every failure


def configure_logging(debug: bool) -> None:
    """Where log records go: stderr, warnings and up (Cascade's own at debug level with --debug).

    The only place logging is configured: library modules just `getLogger(__name__)`.
    """
    from rich.logging import RichHandler

    root = logging.getLogger()
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=errors, show_path=False, show_time=False))
    root.setLevel(logging.WARNING)
    for package in ("cascade", "cascade_dev"):
        logging.getLogger(package).setLevel(logging.DEBUG if debug else logging.WARNING)
    # The trino client says "keyring module not found" on every connection dbt opens; OAuth2 (what
    # the keyring would cache tokens for) is not used.
    logging.getLogger("trino.auth").setLevel(logging.ERROR)


def report_failure(exc: BaseException) -> None:
    """One line naming what to fix; the traceback too with --debug."""
    from cascade.cli.errors import explain

    if Options.debug:
        errors.print_exception(show_locals=False)
    errors.print(f"[bold red]error:[/] {escape(explain(exc))}", highlight=False, soft_wrap=True)


def fail(exc: CascadeError) -> typer.Exit:
    report_failure(exc)
    return typer.Exit(code=1)


def fail_with_reports(exc: CascadeError) -> typer.Exit:
    """An ingest that failed for some sites still loaded the others: show what it did."""
    reports = getattr(exc, "reports", None)
    if reports:
        console.print(ingest_table(reports))
    return fail(exc)


def parse_day(value: str | None, option: str) -> datetime | None:
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
