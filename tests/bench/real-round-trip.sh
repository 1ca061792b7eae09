#!/usr/bin/env bash
# Times issue 13's round trip on both real servers together (a real Cassandra
# 4.1 node and a real OpenSearch 2.19 node, default data sizes): the servers'
# start, `runbook run cluster-hot-backup`, then after a wipe the whole restore
# plan restore-prep prints (`bash restore-plan.sh`), and both JVMs' peak RSS.
# The digests before and after must be equal (else exit 1).
#   tests/bench/real-round-trip.sh [local|s3] [WORKDIR]     (default: s3, a temp folder)
# Uses target/debug/runbook (cargo build -p runbook first) and .venv-tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
storage=${1:-s3}
work=${2:-$(mktemp -d /tmp/real-round-trip.XXXXXX)}
py=$root/.venv-tests/bin/python
sandbox=$work/sb
runbook=$root/target/debug/runbook
tools=$root/tests/real-servers/cassandra/bin
bash tests/setup-test-env.sh >/dev/null
bash tests/setup-real-servers.sh >/dev/null
trap '"$py" tests/sandbox/sandbox.py stop "$sandbox" >&2 || true' EXIT

seconds() { date +%s.%N; }
t0=$(seconds)
"$py" tests/sandbox/sandbox.py start "$sandbox" --real --storage s3 >"$work/sandbox.json"
t1=$(seconds)
"$py" - "$work/sandbox.json" <<'EOF'
import json, sys
record = json.load(open(sys.argv[1]))
for p in record["processes"]:
    if p.get("start_seconds") is not None:
        print("%s: start %.1f s, RSS after filling %d MiB" % (p["name"], p["start_seconds"], p["rss_kib"] // 1024))
EOF
printf 'sandbox start (both servers, data filled): %.1f s\n' "$(echo "$t1 - $t0" | bc)"
place=$([ "$storage" = s3 ] && echo bucket || echo folder)
"$py" tests/sandbox/sandbox.py digest "$sandbox" --attachments "$place" >"$work/before.json"

# shellcheck disable=SC1091
. "$sandbox/env.sh"
t0=$(seconds)
"$runbook" run cluster-hot-backup --vars "$sandbox/vars.json" --journal-dir "$work/journal" \
    --set "storage=$storage" 2>"$work/backup.log"
t1=$(seconds)
printf 'runbook run cluster-hot-backup (storage %s): %.1f s\n' "$storage" "$(echo "$t1 - $t0" | bc)"
stamp=$(basename "$(ls "$sandbox"/backup/backup_*.json)" .json); stamp=${stamp#backup_}
es_url=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["elasticsearch_url"])' "$work/sandbox.json")
t0=$(seconds)
"$runbook" run restore-prep --journal-dir "$work/journal" --set "manifest_path=$sandbox/backup" \
    --set "stamp=$stamp" --set "staging=$work/staging" --set "elasticsearch_url=$es_url" \
    --set "cassandra_connection=$CQLSH_HOST" --set "cassandra_archive_path=$sandbox/backup/cassandra" \
    --set "storage_archive_path=$sandbox/backup/storage" --set "s3_archive_path=$sandbox/backup/minio" \
    --set "attachment_folder=$sandbox/attachments" 2>"$work/restore-prep.log"
t1=$(seconds)
printf 'runbook run restore-prep: %.1f s\n' "$(echo "$t1 - $t0" | bc)"

# Wipe: the keyspace, the index, the attachments.
"$tools/cqlsh" -e "DROP KEYSPACE thehive" >/dev/null
curl -sSf -X DELETE "$es_url/thehive_global" >/dev/null
if [ "$storage" = s3 ]; then
    "$py" -c 'import boto3,sys; boto3.resource("s3", endpoint_url=sys.argv[1], aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1").Bucket("thehive").objects.all().delete()' \
        "${MC_HOST_th_minio/test:test@/}"
else
    find "$sandbox/attachments" -mindepth 1 -delete
fi

t0=$(seconds)
# /usr/bin/time reports the largest peak RSS among the plan's processes (each
# sstableloader is a JVM of its own).
PATH="$tools:$(dirname "$runbook"):$PATH" RUNBOOK_JOURNAL_DIR="$work/journal" \
    /usr/bin/time -f '%M' -o "$work/plan.rss" \
    bash "$work/staging/$stamp/restore-plan.sh" >"$work/plan.out" 2>"$work/plan.err"
t1=$(seconds)
printf 'the restore plan (bash restore-plan.sh): %.1f s\n' "$(echo "$t1 - $t0" | bc)"
printf 'largest peak RSS of one plan command: %d MiB\n' "$(( $(cat "$work/plan.rss") / 1024 ))"
"$py" tests/sandbox/sandbox.py digest "$sandbox" --attachments "$place" >"$work/after.json"
for pid in $("$py" -c 'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(open(sys.argv[1]))["processes"]))' "$work/sandbox.json"); do
    name=$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-60)
    awk -v pid="$pid" -v name="$name" '/^VmHWM/ { printf "pid %s peak RSS (VmHWM): %d MiB  %s\n", pid, $2 / 1024, name }' "/proc/$pid/status"
done
if cmp -s "$work/before.json" "$work/after.json"; then
    echo "digests equal"
else
    echo "digests DIFFER: $work/before.json $work/after.json" >&2
    exit 1
fi
