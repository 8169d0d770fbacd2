"""The command that checks the configuration and the services."""

from __future__ import annotations

import typer
from rich.table import Table

from cascade.cli.output import console


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
