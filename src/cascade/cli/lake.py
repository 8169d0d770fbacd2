"""Commands on the lake itself: load it, look at it, promote a branch."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from cascade.branching import BRANCHES, MAIN
from cascade.cli.output import console, errors, fail, fail_with_reports, parse_day
from cascade.cli.render import ProgressRows, ingest_table, status_tables
from cascade.config import get_settings
from cascade.exceptions import CascadeError
from cascade.lake.schemas import RAW_COLLECTIONS


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
        window = parse_day(since, "--since"), parse_day(until, "--until")
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
        raise fail_with_reports(exc) from None
    console.print(ingest_table(reports))


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every lake table: rows, snapshots, last commit time and each site's cursor."""
    from cascade.lake.catalog import load_lake_catalog
    from cascade.lake.status import lake_status

    try:
        statuses = lake_status(load_lake_catalog(get_settings()))
    except CascadeError as exc:
        raise fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps([s.as_dict() for s in statuses], indent=2) + "\n")
        return
    for table in status_tables(statuses):
        console.print(table)


def promote_branch(
    source: Annotated[
        str | None, typer.Option("--from", help="The branch to merge; default NESSIE_REF.")
    ] = None,
    target: Annotated[str, typer.Option("--into", help="The branch that receives it.")] = MAIN.ref,
) -> None:
    """Merge a Nessie branch (default NESSIE_REF, e.g. dev) into main in one atomic commit (lakehouse profile).

    The write-audit-publish step: build and test on dev (`NESSIE_REF=dev cascade run`), then promote, then `cascade publish` from main. Nessie refuses, and nothing is merged, when main changed the same tables since.
    """
    from cascade.lake.branches import promote

    try:
        promotion = promote(get_settings(), source=source, target=target)
    except CascadeError as exc:
        raise fail(exc) from None
    console.print(f"[green]promote ok[/]: {promotion.summary()}")


branch_app = typer.Typer(
    help="Nessie branches of the lakehouse (NESSIE_URI): list them, create the missing ones.",
    no_args_is_help=True,
)


@branch_app.command("list")
def branch_list() -> None:
    """Every Nessie branch with its head commit, and what the branch model builds on each."""
    from rich.table import Table

    from cascade.lake.nessie import NessieClient

    settings = get_settings()
    try:
        with NessieClient.from_settings(settings.nessie) as nessie:
            heads = nessie.branches()
    except CascadeError as exc:
        raise fail(exc) from None
    model = {b.ref: b for b in BRANCHES}
    table = Table(title=f"Nessie branches at {settings.nessie.uri}")
    for column in ("branch", "head", "dbt target", "Trino catalog"):
        table.add_column(column)
    for name, head in sorted(heads.items()):
        row = model.get(name)
        table.add_row(
            name, head[:12], row.dbt_target if row else "-", row.trino_catalog if row else "-"
        )
    console.print(table)


@branch_app.command("create")
def branch_create(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Branches to create; default the branch model's (main and dev)."),
    ] = None,
) -> None:
    """Create each missing branch from main's head (idempotent: existing branches are kept).

    What a new Nessie needs before the first run on dev: `cascade branch create`.
    """
    from cascade.lake.branches import ensure_branches
    from cascade.lake.nessie import NessieClient

    settings = get_settings()
    try:
        with NessieClient.from_settings(settings.nessie) as nessie:
            created = ensure_branches(nessie, names)
    except CascadeError as exc:
        raise fail(exc) from None
    wanted = names or [b.ref for b in BRANCHES]
    for name in wanted:
        state = "created from " + MAIN.ref if name in created else "exists"
        console.print(f"branch {name}: {state}")
