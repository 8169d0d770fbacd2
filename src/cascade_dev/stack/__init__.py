"""The lakehouse services (PostgreSQL, MinIO, Nessie, Trino) as local processes, for development and CI.

    from cascade_dev.stack import up, down, status, logs, load_stack_settings
    for service in up(load_stack_settings()):
        print(service.describe())

See docs/STACK.md for the environment variables, versions and layout.
"""

from cascade_dev.stack.process import StackError
from cascade_dev.stack.settings import StackSettings, load_stack_settings
from cascade_dev.stack.stack import SERVICES, ServiceStatus, down, logs, status, up
from cascade_dev.stack.trino import run_query as trino_query

__all__ = [
    "SERVICES",
    "ServiceStatus",
    "StackError",
    "StackSettings",
    "down",
    "load_stack_settings",
    "logs",
    "status",
    "trino_query",
    "up",
]
