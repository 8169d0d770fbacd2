#!/bin/sh
# The lake bucket and its prefixes, the same as `cascade stack up` makes them
# (src/cascade_dev/stack/minio.py): bucket `lake` with `warehouse/` and `stage/`. Idempotent.
# Runs with MinIO's client `mc` (shipped in the minio/minio image).
#
# Used by docker-compose (one-shot service `minio-setup`) and by the Helm chart (Job
# `<release>-bucket-setup`, from the chart's files/setup, a link to this directory).
#
# S3_ENDPOINT, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY: where and as whom.
# LAKE_BUCKET (default lake). SETUP_WAIT_SECONDS (default 120): how long to wait for the server.
set -eu

: "${S3_ENDPOINT:?S3_ENDPOINT is not set}"
: "${S3_ACCESS_KEY_ID:?S3_ACCESS_KEY_ID is not set}"
: "${S3_SECRET_ACCESS_KEY:?S3_SECRET_ACCESS_KEY is not set}"
bucket="${LAKE_BUCKET:-lake}"
# mc keeps its configuration under $HOME, which may be read-only in a container.
export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/.mc}"

waited=0
until mc alias set cascade "$S3_ENDPOINT" "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" >/dev/null 2>&1; do
    if [ "$waited" -ge "${SETUP_WAIT_SECONDS:-120}" ]; then
        echo "minio-bucket: the object store at $S3_ENDPOINT is not answering" >&2
        mc alias set cascade "$S3_ENDPOINT" "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" >&2 || true
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done

mc mb --ignore-existing "cascade/$bucket"
for prefix in warehouse stage; do
    # an empty `prefix/` marker object, as the local stack makes
    mc mb --ignore-existing "cascade/$bucket/$prefix/"
done
echo "minio-bucket: s3://$bucket with warehouse/ and stage/ is in place"
