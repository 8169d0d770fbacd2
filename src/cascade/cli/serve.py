"""Commands that read the lake for people: ad-hoc SQL and the AGP report."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cascade.cli.output import OutputFormat, console, fail, parse_day
from cascade.config import get_settings
from cascade.exceptions import CascadeError
from cascade.transform.project import domain_constants


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
        raise fail(exc) from None
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
        int,
        typer.Option("--days", help="Window length in days (the consensus reporting period)."),
    ] = domain_constants().window_days,
) -> None:
    """Write the one-page AGP report: metrics against consensus targets, TIR bar, AGP curve, daily profiles."""
    from cascade.serve.report import render_report

    if subject is not None and subject != site:
        raise typer.BadParameter(
            f"subject {subject!r} is not site {site!r}: each Nightscout site is one person",
            param_hint="--subject",
        )
    end_day = parse_day(end, "--end")
    try:
        path = render_report(
            get_settings(),
            site_id=site,
            end=end_day.date() if end_day else None,
            days=days,
            out=out,
        )
    except CascadeError as exc:
        raise fail(exc) from None
    console.print(f"report written: {path}")
