"""The CLI alone configures logging: stderr, warnings and up; Cascade's own at DEBUG with --debug."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from cascade.cli.output import configure_logging
from cascade_dev.cli import _stack_logging

_NAMES = ("", "cascade", "cascade_dev", "cascade_dev.stack", "trino.auth")


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """Put back the levels and the root's handlers this test changes."""
    loggers = [logging.getLogger(name) for name in _NAMES]
    levels = [logger.level for logger in loggers]
    handlers = list(logging.getLogger().handlers)
    for logger in loggers[1:]:
        logger.setLevel(logging.NOTSET)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    logging.getLogger().handlers[:] = handlers


def test_the_cli_configures_one_handler_and_warnings_by_default() -> None:
    configure_logging(debug=False)
    configure_logging(debug=False)  # once more (a second command in one process): still one
    from rich.logging import RichHandler

    assert sum(isinstance(h, RichHandler) for h in logging.getLogger().handlers) == 1
    assert logging.getLogger("cascade.publish.publisher").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("cascade_dev.stack.trino").getEffectiveLevel() == logging.WARNING


def test_stack_commands_narrate_at_info_and_debug_stays_debug() -> None:
    configure_logging(debug=False)
    _stack_logging()
    assert logging.getLogger("cascade_dev.stack.postgres").getEffectiveLevel() == logging.INFO

    logging.getLogger("cascade_dev.stack").setLevel(logging.NOTSET)
    configure_logging(debug=True)
    _stack_logging()
    assert logging.getLogger("cascade_dev.stack.postgres").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("cascade.lake.ingest").getEffectiveLevel() == logging.DEBUG
