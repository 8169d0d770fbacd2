#!/bin/sh
# Nessie's branches, the same as `cascade stack up` makes them (src/cascade_dev/stack/nessie.py):
# `main` is Nessie's default branch; each branch in NESSIE_BRANCHES (default: dev) is created
# from main's head when it is missing. Idempotent. Needs only sh, curl and sed.
#
# Used by docker-compose (one-shot service `nessie-setup`) and by the Helm chart (Job
# `<release>-nessie-setup`, from the chart's files/setup, a link to this directory).
#
# NESSIE_URI: Nessie's base URL (the API is $NESSIE_URI/api/v2).
# SETUP_WAIT_SECONDS (default 180): how long to wait for Nessie.
set -eu

: "${NESSIE_URI:?NESSIE_URI is not set}"
api="${NESSIE_URI%/}/api/v2"
branches="${NESSIE_BRANCHES:-dev}"

waited=0
until curl -fsS -o /dev/null "$api/config" 2>/dev/null; do
    if [ "$waited" -ge "${SETUP_WAIT_SECONDS:-180}" ]; then
        echo "nessie-branches: Nessie at $api is not answering" >&2
        curl -fsS -o /dev/null "$api/config" >&2 || true
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done

main="$(curl -fsS "$api/trees/main")"
hash="$(printf '%s' "$main" | tr -d '\n' | sed -n 's/.*"hash"[[:space:]]*:[[:space:]]*"\([0-9a-fA-F]*\)".*/\1/p')"
if [ -z "$hash" ]; then
    echo "nessie-branches: Nessie has no branch main (check nessie.server.default-branch): $main" >&2
    exit 1
fi

for branch in $branches; do
    status="$(curl -sS -o /dev/null -w '%{http_code}' "$api/trees/$branch")"
    if [ "$status" = 200 ]; then
        echo "nessie-branches: $branch exists"
        continue
    fi
    if [ "$status" != 404 ]; then
        echo "nessie-branches: looking up $branch answered HTTP $status" >&2
        exit 1
    fi
    status="$(curl -sS -o /tmp/nessie-branch.out -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' \
        --data "{\"type\":\"BRANCH\",\"name\":\"main\",\"hash\":\"$hash\"}" \
        "$api/trees?name=$branch&type=BRANCH")"
    case "$status" in
        200 | 201) echo "nessie-branches: created $branch from main@$hash" ;;
        409) echo "nessie-branches: $branch was created meanwhile" ;;
        *)
            echo "nessie-branches: creating $branch answered HTTP $status: $(cat /tmp/nessie-branch.out)" >&2
            exit 1
            ;;
    esac
done
