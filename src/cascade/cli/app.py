"""The `cascade` command line: a thin shell over the library, one command per job.

Commands live with their group (lake, transform, serve, publish, doctor); this module only
assembles them. Development commands (`demo`, `stack`, `nightscout`) arrive as plugins through
the `cascade.cli` entry point group, so the product never imports its development tools.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated

import typer

from cascade.cli import doctor, lake, publish, serve, transform
from cascade.cli.output import Options, configure_logging, report_failure

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
    Options.debug = debug
    configure_logging(debug)


app.command()(lake.ingest)
app.command()(lake.status)
app.command("promote")(lake.promote_branch)
app.add_typer(lake.branch_app, name="branch")
app.command()(transform.transform)
app.command()(transform.run)
app.command()(serve.query)
app.command()(serve.report)
app.command()(publish.publish)
app.command()(doctor.doctor)
for plugin in entry_points(group="cascade.cli"):
    plugin.load()(app)


def main() -> None:
    """The `cascade` entry point: anything not already reported becomes one line and exit 1."""
    try:
        app()
    except Exception as exc:  # a full disk, a read-only home, a bug: never a bare traceback
        report_failure(exc)
        raise SystemExit(1) from None
