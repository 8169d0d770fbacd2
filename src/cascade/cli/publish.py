"""The command that copies the marts into PostgreSQL for BI."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cascade.cli.output import console, errors, fail
from cascade.cli.render import ProgressRows
from cascade.config import get_settings
from cascade.exceptions import CascadeError


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
        raise fail(exc) from None
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
