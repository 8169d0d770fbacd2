"""Superset settings for Cascade: everything from the environment (set by docker-compose from .env).

SUPERSET_SECRET_KEY signs sessions and encrypts stored connection passwords: set it once and keep it.
The metadata database is PostgreSQL's `superset` database, as the role `superset`.
"""

import os
from urllib.parse import quote

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]

SQLALCHEMY_DATABASE_URI = "postgresql+psycopg2://superset:{password}@{host}:{port}/superset".format(
    password=quote(os.environ["SUPERSET_DB_PASSWORD"], safe=""),
    host=os.environ.get("SUPERSET_DB_HOST", "postgres"),
    port=os.environ.get("SUPERSET_DB_PORT", "5432"),
)

# No example data, no telemetry.
SUPERSET_LOAD_EXAMPLES = False
FEATURE_FLAGS = {"ENABLE_TEMPLATE_PROCESSING": False}
