"""The command that checks the configuration and the services."""

from __future__ import annotations

import typer
from rich.table import Table

from cascade.cli.output import console


def doctor() -> None:
    """Check the configuration and every service the active profile needs, and say exactly what is wrong."""
    from cascade.config import get_settings
    from cascade.doctor import configuration_failed, run_checks
    from cascade.exceptions import CascadeError

    try:
        settings = get_settings()
    except CascadeError as exc:  # a bad setting is the doctor's first finding, not a crash
        checks = configuration_failed(exc)
    else:
        checks = run_checks(settings)
    table = Table(title="cascade doctor")
    for column in ("check", "", "detail"):
        table.add_column(column)
    for check in checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail)
    console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(code=1)
