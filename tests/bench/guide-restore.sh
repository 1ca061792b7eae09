#!/usr/bin/env bash
# The baseline restore of tests/bench/e2e-bench.sh: the commands of TheHive's
# documented restore of a cluster hot backup (reference-procedure.md, "The
# restore procedure in detail"), in the guide's order, written here from the
# procedure, with the guide's variables pointed at the sandbox by the
# environment (the same ones as guide-backup.sh).
#
#   guide-restore.sh local|s3 STAMP
#
# Cassandra and Elasticsearch at the same time:
#   Elasticsearch: DELETE the index, POST _restore?wait_for_completion=true
#   (the answer is not checked, as in the guide).
#   Cassandra: `tar xf` of cassandra_STAMP.tar in its own folder; DESCRIBE
#   KEYSPACE written nowhere (the guide's comparison is dead), so the keyspace
#   is dropped and recreated with `cqlsh -f create_keyspace_KS.cql`; then the
#   serial loop: `sstableloader -d HOST FOLDER` for each table folder.
# Then the attachments: local, `rm -rf FOLDER/*` and `cp -r` of the extracted
# files_STAMP/; S3, minio_STAMP.tar extracted and `mcli mirror`ed into the bucket
# (`aws s3 sync` standing in, without --delete: the guide's mirror has no --remove).
set -euo pipefail

storage=${1:?usage: guide-restore.sh local|s3 STAMP}
STAMP=${2:?usage: guide-restore.sh local|s3 STAMP}
CASSANDRA_KEYSPACE=${CASSANDRA_KEYSPACE:-thehive}
CASSANDRA_CONNECTION=${CASSANDRA_CONNECTION:-127.0.0.1}
CASSANDRA_ARCHIVE_PATH=${CASSANDRA_ARCHIVE_PATH:-/mnt/backup/cassandra}
ELASTICSEARCH_URL=${ELASTICSEARCH_URL:-http://127.0.0.1:9200}
ELASTICSEARCH_SNAPSHOT_REPOSITORY=${ELASTICSEARCH_SNAPSHOT_REPOSITORY:-thehive_repository}
ATTACHMENT_FOLDER=${ATTACHMENT_FOLDER:-/opt/thp/thehive/files}
STORAGE_ARCHIVE_PATH=${STORAGE_ARCHIVE_PATH:-/mnt/backup/storage}
MINIO_ARCHIVE_PATH=${MINIO_ARCHIVE_PATH:-/mnt/backup/minio}
MINIO_ENDPOINT=${MINIO_ENDPOINT:-http://127.0.0.1:9000}
MINIO_BUCKET=${MINIO_BUCKET:-thehive}
RESTORE_WORK=${RESTORE_WORK:-/tmp/thehive-restore}
AWS=${AWS:-aws}

elasticsearch_restore() {
    local name="elasticsearch_$STAMP"
    curl -sS -X DELETE "$ELASTICSEARCH_URL/thehive_global" >/dev/null
    curl -sS -X POST "$ELASTICSEARCH_URL/_snapshot/$ELASTICSEARCH_SNAPSHOT_REPOSITORY/$name/_restore?wait_for_completion=true" \
        -H 'Content-Type: application/json' -d '{"indices":"thehive_global","include_global_state":false}' >/dev/null
}

cassandra_restore() {
    local work top folder
    work="$RESTORE_WORK/cassandra"; top="cassandra_$STAMP"
    rm -rf "$work" && mkdir -p "$work"
    tar xf "$CASSANDRA_ARCHIVE_PATH/$top.tar" -C "$work"
    cqlsh "$CASSANDRA_CONNECTION" -e "DROP KEYSPACE IF EXISTS $CASSANDRA_KEYSPACE" >/dev/null
    cqlsh "$CASSANDRA_CONNECTION" -f "$work/$top/create_keyspace_$CASSANDRA_KEYSPACE.cql" >/dev/null
    for folder in "$work/$top/$CASSANDRA_KEYSPACE"/*/; do
        sstableloader -d "$CASSANDRA_CONNECTION" "${folder%/}" >/dev/null
    done
    rm -rf "$work"
}

elasticsearch_restore & elasticsearch=$!
cassandra_restore & cassandra=$!
wait "$elasticsearch"
wait "$cassandra"

work="$RESTORE_WORK/storage"
rm -rf "$work" && mkdir -p "$work"
if [ "$storage" = local ]; then
    tar xf "$STORAGE_ARCHIVE_PATH/files_$STAMP.tar" -C "$work"
    rm -rf "${ATTACHMENT_FOLDER:?}"/*
    cp -r "$work/files_$STAMP"/* "$ATTACHMENT_FOLDER"/
else
    tar xf "$MINIO_ARCHIVE_PATH/minio_$STAMP.tar" -C "$work"
    "$AWS" --endpoint-url "$MINIO_ENDPOINT" s3 sync --only-show-errors "$work/minio_$STAMP" "s3://$MINIO_BUCKET/"
fi
rm -rf "$work"
