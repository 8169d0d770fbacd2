"""Commands that build the dbt project: alone, or as the whole job after ingest."""

from __future__ import annotations

from typing import Annotated

import typer

from cascade.cli.output import console, errors, fail, fail_with_reports
from cascade.cli.render import ProgressRows, ingest_table
from cascade.config import get_settings
from cascade.exceptions import CascadeError


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
        raise fail(exc) from None
    console.print(f"[green]transform ok[/]: {result.summary()}")


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
        raise fail_with_reports(exc) from None
    console.print(ingest_table(result.loads))
    loaded = sum(r.inserted + r.replaced for r in result.loads)
    console.print(
        f"[green]run ok[/]: {loaded:,} records ingested or updated; {result.transform.summary()}"
    )
    if result.promotion is not None:
        console.print(f"[green]promote ok[/]: {result.promotion.summary()}")
