#!/usr/bin/env bash
# The baseline of tests/bench/e2e-bench.sh: the commands of TheHive's documented
# hot backup of a cluster ("Perform a Hot Backup on a Cluster", see
# ../shared/docs/reference-procedure.md), in the guide's order, written here from
# the procedure (not a copy of its scripts). The settings are the guide's
# variables (its defaults), pointed at the sandbox by the environment.
#
#   guide-backup.sh local|s3        prints the stamp it used
#
# Part 1, Cassandra and Elasticsearch at the same time:
#   Cassandra: nodetool snapshot -t cassandra_STAMP KS; cqlsh DESCRIBE KEYSPACE
#   (WARNING lines dropped) > create_keyspace_KS.cql; `cp -p -r` of every table's
#   snapshot folder into a staging folder; `tar cf cassandra_STAMP.tar` of it;
#   the staging folder removed; nodetool clearsnapshot -t cassandra_STAMP.
#   Elasticsearch: the .info marker, PUT the snapshot elasticsearch_STAMP, then
#   its state polled until SUCCESS (the guide's script means to; its published
#   version exits after "accepted": polling here makes the baseline complete,
#   and with a 1 s interval it is not slower than it needs to be).
# Part 2, the attachments: `tar cf files_STAMP.tar` of the folder (top folder
# files_STAMP/), or for S3 `mcli ls`, `mcli mirror` of the bucket into
# minio_STAMP/, `tar cf minio_STAMP.tar`, the mirror removed. `mcli` is not
# installed here (no package registry ships it): `aws s3 ls` / `aws s3 sync`
# (awscli, the same kind of client: list, then a parallel copy of every object
# to a file) stand in for it.
# Like the guide, nothing is verified or fsynced, and no checksum is written.
set -euo pipefail

storage=${1:?usage: guide-backup.sh local|s3}
CASSANDRA_KEYSPACE=${CASSANDRA_KEYSPACE:-thehive}
CASSANDRA_CONNECTION=${CASSANDRA_CONNECTION:-127.0.0.1}
CASSANDRA_DATA=${CASSANDRA_DATA:-/var/lib/cassandra}
CASSANDRA_ARCHIVE_PATH=${CASSANDRA_ARCHIVE_PATH:-/mnt/backup/cassandra}
ELASTICSEARCH_URL=${ELASTICSEARCH_URL:-http://127.0.0.1:9200}
ELASTICSEARCH_SNAPSHOT_REPOSITORY=${ELASTICSEARCH_SNAPSHOT_REPOSITORY:-thehive_repository}
ELASTICSEARCH_ARCHIVE_PATH=${ELASTICSEARCH_ARCHIVE_PATH:-/mnt/backup/elasticsearch}
ATTACHMENT_FOLDER=${ATTACHMENT_FOLDER:-/opt/thp/thehive/files}
STORAGE_ARCHIVE_PATH=${STORAGE_ARCHIVE_PATH:-/mnt/backup/storage}
MINIO_ARCHIVE_PATH=${MINIO_ARCHIVE_PATH:-/mnt/backup/minio}
MINIO_ENDPOINT=${MINIO_ENDPOINT:-http://127.0.0.1:9000}
MINIO_BUCKET=${MINIO_BUCKET:-thehive}
AWS=${AWS:-aws}

STAMP=$(date +%Y%m%d_%Hh%Mm%Ss)

cassandra_backup() {
    local tag="cassandra_$STAMP" staging table
    staging="$CASSANDRA_ARCHIVE_PATH/$tag"
    nodetool snapshot -t "$tag" "$CASSANDRA_KEYSPACE" >/dev/null
    mkdir -p "$staging/$CASSANDRA_KEYSPACE"
    cqlsh "$CASSANDRA_CONNECTION" -e "DESCRIBE KEYSPACE $CASSANDRA_KEYSPACE" | grep -v '^WARNING' \
        >"$staging/create_keyspace_$CASSANDRA_KEYSPACE.cql"
    for table in "$CASSANDRA_DATA/data/$CASSANDRA_KEYSPACE"/*/; do
        table=${table%/}
        [ -d "$table/snapshots/$tag" ] || continue
        cp -p -r "$table/snapshots/$tag" "$staging/$CASSANDRA_KEYSPACE/$(basename "$table")"
    done
    tar cf "$CASSANDRA_ARCHIVE_PATH/$tag.tar" -C "$CASSANDRA_ARCHIVE_PATH" "$tag"
    rm -rf "$staging"
    nodetool clearsnapshot -t "$tag" >/dev/null
}

elasticsearch_backup() {
    local name="elasticsearch_$STAMP" state=""
    echo "$name" >"$ELASTICSEARCH_ARCHIVE_PATH/$name.info"
    curl -sSf -X PUT "$ELASTICSEARCH_URL/_snapshot/$ELASTICSEARCH_SNAPSHOT_REPOSITORY/$name" \
        -H 'Content-Type: application/json' \
        -d '{"indices":"thehive_global","ignore_unavailable":true,"include_global_state":false}' \
        | grep -q '"accepted":true'
    while [ "$state" != SUCCESS ]; do
        sleep 1
        state=$(curl -sSf "$ELASTICSEARCH_URL/_snapshot/$ELASTICSEARCH_SNAPSHOT_REPOSITORY/$name" \
            | sed -n 's/.*"state":"\([A-Z_]*\)".*/\1/p')
        case "$state" in FAILED|PARTIAL|INCOMPATIBLE) echo "snapshot $name: $state" >&2; return 1 ;; esac
    done
}

cassandra_backup & cassandra=$!
elasticsearch_backup & elasticsearch=$!
wait "$cassandra"
wait "$elasticsearch"

if [ "$storage" = local ]; then
    parent=$(dirname "$ATTACHMENT_FOLDER")
    tar cf "$STORAGE_ARCHIVE_PATH/files_$STAMP.tar" -C "$parent" \
        --transform "s,^$(basename "$ATTACHMENT_FOLDER"),files_$STAMP," "$(basename "$ATTACHMENT_FOLDER")"
else
    "$AWS" --endpoint-url "$MINIO_ENDPOINT" s3 ls "s3://$MINIO_BUCKET" >/dev/null
    "$AWS" --endpoint-url "$MINIO_ENDPOINT" s3 sync --only-show-errors "s3://$MINIO_BUCKET" "$MINIO_ARCHIVE_PATH/minio_$STAMP"
    tar cf "$MINIO_ARCHIVE_PATH/minio_$STAMP.tar" -C "$MINIO_ARCHIVE_PATH" "minio_$STAMP"
    rm -rf "${MINIO_ARCHIVE_PATH:?}/minio_$STAMP"
fi
echo "$STAMP"
