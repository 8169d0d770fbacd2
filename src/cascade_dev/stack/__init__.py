"""The lakehouse services (PostgreSQL, MinIO, Nessie, Trino) as local processes, for development and CI.

    from cascade.config import load_settings
    from cascade_dev.stack import up, down, status, logs
    for service in up(load_settings()):
        print(service.describe())

See docs/STACK.md for the environment variables, versions and layout.
"""

from cascade_dev.stack.process import StackError
from cascade_dev.stack.stack import SERVICES, ServiceStatus, down, logs, status, up
from cascade_dev.stack.trino import run_query as trino_query

__all__ = [
    "SERVICES",
    "ServiceStatus",
    "StackError",
    "down",
    "logs",
    "status",
    "trino_query",
    "up",
]
