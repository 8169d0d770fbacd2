#!/usr/bin/env bash
# One-shot initialisation of Superset for Cascade (idempotent): metadata schema, admin user,
# roles, and two database connections: `marts` (PostgreSQL, read-only as bi_reader) and
# `lakehouse` (Trino, catalog iceberg).
set -euo pipefail

urlencode() { python -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

superset db upgrade
if ! superset fab list-users 2>/dev/null | grep -q "username:${SUPERSET_ADMIN_USER}[ |]"; then
    superset fab create-admin \
        --username "$SUPERSET_ADMIN_USER" \
        --firstname Cascade --lastname Admin \
        --email "$SUPERSET_ADMIN_EMAIL" \
        --password "$SUPERSET_ADMIN_PASSWORD"
fi
superset init
superset set-database-uri --database_name marts \
    --uri "postgresql+psycopg2://bi_reader:$(urlencode "$BI_READER_PASSWORD")@${MARTS_HOST}:${MARTS_PORT}/marts"
superset set-database-uri --database_name lakehouse \
    --uri "trino://superset@${TRINO_HOST}:${TRINO_PORT}/iceberg"
echo "superset-init: done"
