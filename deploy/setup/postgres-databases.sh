#!/usr/bin/env bash
# Cascade's PostgreSQL databases and roles, the same as `cascade stack up` makes them
# (src/cascade_dev/stack/postgres.py): databases nessie, dagster, superset and marts, each owned by a
# login role of the same name; bi_reader may connect to marts and read what the marts role
# creates, nothing else. Idempotent: run it on every start (passwords are re-applied).
#
# Used by docker-compose (one-shot service `postgres-setup`) and by the Helm chart (Job
# `<release>-db-setup`, from the chart's files/setup, a link to this directory).
#
# Connection: libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD (an administrator that may create roles
# and databases), PGDATABASE (default postgres).
# Passwords: NESSIE_DB_PASSWORD, DAGSTER_DB_PASSWORD, SUPERSET_DB_PASSWORD, MARTS_DB_PASSWORD,
# BI_READER_PASSWORD. SETUP_WAIT_SECONDS (default 120): how long to wait for the server.
set -euo pipefail

: "${NESSIE_DB_PASSWORD:?NESSIE_DB_PASSWORD is not set}"
: "${DAGSTER_DB_PASSWORD:?DAGSTER_DB_PASSWORD is not set}"
: "${SUPERSET_DB_PASSWORD:?SUPERSET_DB_PASSWORD is not set}"
: "${MARTS_DB_PASSWORD:?MARTS_DB_PASSWORD is not set}"
: "${BI_READER_PASSWORD:?BI_READER_PASSWORD is not set}"
admin_db="${PGDATABASE:-postgres}"

sql() { # sql DATABASE [psql -v NAME=VALUE ...] < script
    local database="$1"
    shift
    psql -X -q -v ON_ERROR_STOP=1 -d "$database" "$@"
}

deadline=$((SECONDS + ${SETUP_WAIT_SECONDS:-120}))
until psql -X -q -d "$admin_db" -c 'SELECT 1' >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        echo "postgres-databases: PostgreSQL at ${PGHOST:-local socket}:${PGPORT:-5432} is not answering" >&2
        psql -X -d "$admin_db" -c 'SELECT 1' >&2 || true
        exit 1
    fi
    sleep 2
done

ensure_role() { # ensure_role ROLE PASSWORD
    sql "$admin_db" -v role="$1" -v password="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'password') \gexec
SQL
}

ensure_database() { # ensure_database NAME (owned by the role of the same name)
    sql "$admin_db" -v db="$1" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L', :'db', :'db', 'UTF8')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'db', :'db') \gexec
SQL
}

ensure_role nessie "$NESSIE_DB_PASSWORD"
ensure_role dagster "$DAGSTER_DB_PASSWORD"
ensure_role superset "$SUPERSET_DB_PASSWORD"
ensure_role marts "$MARTS_DB_PASSWORD"
ensure_role bi_reader "$BI_READER_PASSWORD"
for database in nessie dagster superset marts; do
    ensure_database "$database"
done

# bi_reader: connect to marts and read whatever the marts role creates, nothing else.
sql "$admin_db" <<'SQL'
GRANT CONNECT ON DATABASE marts TO bi_reader;
SQL
sql marts <<'SQL'
GRANT USAGE ON SCHEMA public TO bi_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bi_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE marts GRANT SELECT ON TABLES TO bi_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE marts GRANT USAGE ON SCHEMAS TO bi_reader;
SQL
echo "postgres-databases: nessie, dagster, superset, marts and their roles are in place"
