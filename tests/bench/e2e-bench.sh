#!/usr/bin/env bash
# End-to-end benchmark (issue 16): runbook's stock workflows against the commands
# of TheHive's documented procedure (tests/bench/guide-backup.sh and
# guide-restore.sh), on the same sandbox data and the same servers (a real
# Cassandra 4.1 node, a real OpenSearch 2.19 node, moto_server for S3), alternating
# run by run, with a warm and a cold page cache, for storage local and s3, backup
# and restore. It prints Markdown: the disk's measured speed, one row per
# configuration (median times, the ratio runbook/guide, throughput, CPU time, peak
# RSS) and which of the issue's targets are met. Not a test: nothing is asserted.
#
#   tests/bench/e2e-bench.sh                      # SIZES=small,1g RUNS=3
#   SIZES=small,1g,4g RUNS=3 tests/bench/e2e-bench.sh
#
# Settings (environment):
#   SIZES=small,1g      data sizes: small (the sandbox's default: 4 MiB keyspace,
#                       300 attachments, 1,000 documents), 1g (~0.65 GiB keyspace,
#                       10,000 attachments ~0.36 GiB, 20,000 documents), 4g (~2.6 GiB,
#                       40,000 attachments ~1.45 GiB, 80,000 documents)
#   RUNS=3              backup runs per tool and configuration (median of)
#   RESTORE_RUNS=1      restore runs per tool and configuration (a restore at 1g
#                       takes minutes, mostly sstableloader)
#   STORAGES=local,s3   OPS=backup,restore
#   CACHES=warm,cold    the backups' page cache (cold: dropped first; needs root)
#   RESTORE_CACHES=cold the restores' (a restore after a disaster reads cold archives)
#   RESTORE_STORAGES=$STORAGES  the storages restored (each restore pair takes minutes)
#   CHECK=small         after the first restore of each tool and storage, the
#                       sandbox's digest (every row, document and file) must equal
#                       the one before (else exit 1): at the small size (default),
#                       at every size (all: ~1 min per digest at 1g), or never (0)
#   WORK=DIR            scratch folder (default: a new /tmp/e2e-bench.XXXXXX),
#                       on the disk being measured; removed at the end unless KEEP=1
#   RUNBOOK=PATH        the runbook binary (default: target/release/runbook, built)
#   DD_MB=1024          size of the disk speed test
# Needs ~3x the data size free in WORK (5 GB at 1g). Uses .venv-tests (sandbox),
# .real-servers (installed by tests/setup-real-servers.sh) and .venv-bench
# (awscli for the guide's S3 commands, from tests/bench/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

SIZES=${SIZES:-small,1g}
RUNS=${RUNS:-3}
RESTORE_RUNS=${RESTORE_RUNS:-1}
STORAGES=${STORAGES:-local,s3}
OPS=${OPS:-backup,restore}
CACHES=${CACHES:-warm,cold}
RESTORE_CACHES=${RESTORE_CACHES:-cold}
RESTORE_STORAGES=${RESTORE_STORAGES:-$STORAGES}
CHECK=${CHECK:-small}
KEEP=${KEEP:-0}
DD_MB=${DD_MB:-1024}
WORK=${WORK:-$(mktemp -d /tmp/e2e-bench.XXXXXX)}
py=$root/.venv-tests/bin/python
tools=$root/tests/real-servers/cassandra/bin
say() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- set-up

mkdir -p "$WORK"
sandboxes=()
cleanup() {
    local status=$?
    for sb in "${sandboxes[@]}"; do
        "$py" tests/sandbox/sandbox.py stop "$sb" >/dev/null 2>&1 || say "could not stop the sandbox $sb"
    done
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash tests/setup-test-env.sh >/dev/null
bash tests/setup-real-servers.sh >/dev/null
if [ ! -x .venv-bench/bin/aws ]; then
    say "installing awscli into .venv-bench (tests/bench/requirements.txt)"
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -q -r tests/bench/requirements.txt
fi
aws=$root/.venv-bench/bin/aws
if [ -z "${RUNBOOK:-}" ]; then
    say "cargo build --release -p runbook"
    cargo build --release -q -p runbook
    RUNBOOK=$root/target/release/runbook
fi

# The SSTable writer for the 1g and 4g keyspaces (Java 17's javac for the node's Java 11).
javac --release 11 -nowarn -cp ".real-servers/cassandra/lib/*" -d "$WORK/classes" tests/bench/SSTableFill.java 2>/dev/null

can_drop=no
if [ -w /proc/sys/vm/drop_caches ] && (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then can_drop=yes; fi
drop_caches() { sync; [ "$can_drop" = no ] || echo 3 >/proc/sys/vm/drop_caches; }
if [ "$can_drop" = no ] && [[ ",$CACHES," == *,cold,* ]]; then
    say "cannot drop the page cache (not root): no cold runs"
    CACHES=warm
    RESTORE_CACHES=warm
fi

# The disk: fsync'd sequential write, O_DIRECT read.
dd_speed() { # dd's last line -> MB/s (10^6 bytes per second)
    awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "bytes") b = $(i - 1); for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) s = $(i - 1) } END { printf "%.0f", b / s / 1e6 }'
}
say "disk speed: dd $DD_MB MiB in $WORK"
write_mbs=$(dd if=/dev/zero of="$WORK/dd.test" bs=1M count="$DD_MB" conv=fsync 2>&1 | dd_speed)
drop_caches
read_mbs=$(dd if="$WORK/dd.test" of=/dev/null bs=1M iflag=direct 2>&1 | dd_speed)
rm -f "$WORK/dd.test"
say "disk: write $write_mbs MB/s (conv=fsync), read $read_mbs MB/s (iflag=direct)"

results=$WORK/results.tsv
printf 'size\tstorage\top\tcache\ttool\trun\twall\tcpu\trss_kib\tbytes\tload\n' >"$results"
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')

# ---------------------------------------------------------------- one sandbox per size

size_args() {
    case "$1" in
        small) echo "300 1000 0" ;;
        1g) echo "10000 20000 650" ;;
        4g) echo "40000 80000 2600" ;;
        *) echo "unknown size $1 (small, 1g, 4g)" >&2; exit 2 ;;
    esac
}

# The keyspace grown to MB more with SSTables written offline (SSTableFill) and
# handed to the node with `nodetool import` (the node's own loader of SSTable
# files); the shares are JanusGraph's tables' as in the sandbox's CQL fill.
grow_keyspace() {
    local mb=$1 fill=$WORK/fill pairs=() table share
    local -a common
    mapfile -t common < <(grep -v '^\s*\(#\|$\)' tests/real-servers/cassandra/jvm11-common.options)
    for pair in edgestore:0.52 graphindex:0.27 txlog:0.09 systemlog:0.04 janusgraph_ids:0.02 \
                system_properties:0.02 edgestore_lock_:0.015 graphindex_lock_:0.01 system_properties_lock_:0.005; do
        table=${pair%%:*}; share=${pair#*:}
        pairs+=("$table=$(echo "$mb * $share" | bc -l)")
    done
    say "writing $mb MB of SSTables (CQLSSTableWriter)"
    .real-servers/cassandra/java11/bin/java -Xmx1g "${common[@]}" -Dcassandra.storagedir="$fill" \
        -Dlogback.configurationFile="$root/tests/real-servers/cassandra/logback-tools.xml" \
        -cp "$WORK/classes:.real-servers/cassandra/lib/*" SSTableFill "$fill" thehive bench "${pairs[@]}" >&2
    for pair in "${pairs[@]}"; do
        table=${pair%%=*}
        nodetool import thehive "$table" "$fill/$table" >/dev/null
    done
    rm -rf "$fill"
}

# Compactions would run behind the measured runs: off for the keyspace
# (again after each restore: a recreated keyspace has them on).
quiet_keyspace() {
    nodetool disableautocompaction thehive >/dev/null
    nodetool stop COMPACTION >/dev/null 2>&1 || true
}

start_size() {
    local size=$1 objects docs mb
    read -r objects docs mb <<<"$(size_args "$size")"
    sb=$WORK/sb-$size
    sandboxes+=("$sb")
    say "size $size: sandbox with $objects attachments, $docs documents"
    "$py" tests/sandbox/sandbox.py start "$sb" --cassandra real --es opensearch --storage s3 \
        --objects "$objects" --es-docs "$docs" >"$WORK/sandbox-$size.json"
    # shellcheck disable=SC1091
    . "$sb/env.sh"
    export PATH="$tools:$PATH"
    eval "$("$py" - "$sb/vars.json" "$WORK/sandbox-$size.json" <<'EOF'
import json, shlex, sys
v = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
pairs = {
    "CASSANDRA_CONNECTION": v["cassandra_connection"], "CASSANDRA_DATA": v["cassandra_data_folder"],
    "CASSANDRA_ARCHIVE_PATH": v["cassandra_archive_path"], "ELASTICSEARCH_URL": v["elasticsearch_url"],
    "ELASTICSEARCH_ARCHIVE_PATH": v["elasticsearch_archive_path"], "ATTACHMENT_FOLDER": v["attachment_folder"],
    "STORAGE_ARCHIVE_PATH": v["storage_archive_path"], "MINIO_ARCHIVE_PATH": v["s3_archive_path"],
    "MINIO_ENDPOINT": s["s3_endpoint"], "MANIFEST_PATH": v["manifest_path"],
}
for key, value in pairs.items():
    print("export %s=%s" % (key, shlex.quote(value)))
EOF
)"
    export AWS="$aws" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
    export RESTORE_WORK=$WORK/guide-restore
    [ "$mb" = 0 ] || grow_keyspace "$mb"
    nodetool flush thehive >/dev/null
    quiet_keyspace
    keyspace_bytes=$(du -sb "$CASSANDRA_DATA/data/thehive" | cut -f1)
    attachment_bytes=$(du -sb "$ATTACHMENT_FOLDER" | cut -f1)
    say "size $size: keyspace $((keyspace_bytes / 1048576)) MiB on disk, attachments $((attachment_bytes / 1048576)) MiB"
    printf '%s\t%s\t%s\t%s\t%s\n' "$size" "$keyspace_bytes" "$attachment_bytes" "$objects" "$docs" >>"$WORK/sizes.tsv"
    if checking "$size" && [[ ",$OPS," == *,restore,* ]]; then
        [[ ",$RESTORE_STORAGES," != *,local,* ]] || "$py" tests/sandbox/sandbox.py digest "$sb" --attachments folder >"$WORK/digest-$size-local.json"
        [[ ",$RESTORE_STORAGES," != *,s3,* ]] || "$py" tests/sandbox/sandbox.py digest "$sb" --attachments bucket >"$WORK/digest-$size-s3.json"
    fi
}

# ---------------------------------------------------------------- measuring

# measure NAME TOOL COMMAND...: runs COMMAND under /usr/bin/time (wall, CPU of
# it and every process it waited for); for runbook, its own peak RSS (VmHWM,
# read every 0.2 s while it runs: monotonic, so the last read is the peak
# but for the last 0.2 s).
measure() {
    local name=$1 tool=$2; shift 2
    /usr/bin/time -f '%e %U %S' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local timer=$! child="" hwm=0 key value rest
    while kill -0 "$timer" 2>/dev/null; do
        if [ "$tool" = runbook ]; then
            [ -n "$child" ] || child=$(pgrep -P "$timer" | head -1 || true)
            if [ -n "$child" ] && [ -r "/proc/$child/status" ]; then
                while read -r key value rest; do
                    [ "$key" = VmHWM: ] && hwm=$value
                done <"/proc/$child/status" 2>/dev/null || true
            fi
        fi
        sleep 0.2
    done
    if ! wait "$timer"; then
        say "$name failed; its output:"; tail -20 "$WORK/$name.err" >&2; exit 1
    fi
    read -r wall user sys <"$WORK/$name.time"
    cpu=$(echo "$user + $sys" | bc -l)
    rss=$hwm
}

record() { # size storage op cache tool run bytes
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" \
        "$wall" "$cpu" "$rss" "$7" "$(cut -d' ' -f1 /proc/loadavg)" >>"$results"
    local peak=""
    [ "$5" != runbook ] || peak=", peak RSS $((rss / 1024)) MiB"
    say "$1 $2 $3 $4 $5 run $6: $wall s wall, $cpu s CPU$peak"
}

# The page cache before a measured run: everything written back (a run must not
# pay for the one before), then dropped (cold) or the run's inputs read (warm).
prepare_cache() { # cache inputs...
    local cache=$1; shift
    drop_caches
    if [ "$cache" = warm ]; then
        find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true
    fi
}

newest_set() { ls "$MANIFEST_PATH"/backup_*.json | sort | tail -1 | sed 's,.*/backup_\(.*\)\.json,\1,'; }

set_bytes() { # stamp storage: the archives' bytes
    local stamp=$1 storage=$2 files
    files="$CASSANDRA_ARCHIVE_PATH/cassandra_$stamp.tar"
    if [ "$storage" = local ]; then files+=" $STORAGE_ARCHIVE_PATH/files_$stamp.tar"; else files+=" $MINIO_ARCHIVE_PATH/minio_$stamp.tar"; fi
    # shellcheck disable=SC2086
    du -cb $files | tail -1 | cut -f1
}

drop_set() { # stamp: every file and the snapshot of a set (runbook's or the guide's)
    local stamp=$1
    rm -f "$CASSANDRA_ARCHIVE_PATH"/cassandra_"$stamp".tar* "$STORAGE_ARCHIVE_PATH"/files_"$stamp".tar* \
          "$MINIO_ARCHIVE_PATH"/minio_"$stamp".tar* "$MANIFEST_PATH/backup_$stamp.json" \
          "$ELASTICSEARCH_ARCHIVE_PATH/elasticsearch_$stamp.info"
    curl -sS -X DELETE "$ELASTICSEARCH_URL/_snapshot/thehive_repository/elasticsearch_$stamp" >/dev/null
}

# The runbook command lines: the stock workflows with the sandbox's vars.json.
runbook_backup() { # storage
    args=("$RUNBOOK" run cluster-hot-backup --vars "$sb/vars.json" --journal-dir "$WORK/journal" --set "storage=$1")
}
runbook_restore() { # storage stamp
    args=("$RUNBOOK" run cluster-hot-restore --vars "$sb/vars.json" --journal-dir "$WORK/journal"
          --set "storage=$1" --set "stamp=$2" --set "confirm=$2" --set thehive_check=false
          --set "staging=$WORK/runbook-staging")
}

one_backup() { # size storage cache tool run
    local size=$1 storage=$2 cache=$3 tool=$4 run=$5 stamp
    prepare_cache "$cache" "$ATTACHMENT_FOLDER" "$CASSANDRA_DATA/data/thehive"
    if [ "$tool" = runbook ]; then
        runbook_backup "$storage"
        measure "backup-$size-$storage-$cache-$tool-$run" runbook "${args[@]}"
        stamp=$(newest_set)
    else
        measure "backup-$size-$storage-$cache-$tool-$run" guide bash tests/bench/guide-backup.sh "$storage"
        stamp=$(tail -1 "$WORK/backup-$size-$storage-$cache-$tool-$run.out")
    fi
    record "$size" "$storage" backup "$cache" "$tool" "$run" "$(set_bytes "$stamp" "$storage")"
    drop_set "$stamp"
}

checking() { [ "$CHECK" = all ] || [ "$CHECK" = "$1" ]; }

digest_check() { # size storage tool
    checking "$1" || return 0
    local place=folder
    [ "$2" = local ] || place=bucket
    "$py" tests/sandbox/sandbox.py digest "$sb" --attachments "$place" >"$WORK/digest-after.json"
    if ! cmp -s "$WORK/digest-after.json" "$WORK/digest-$1-$2.json"; then
        say "the data after $3's restore ($1, $2) differ from the data before: $WORK/digest-after.json"
        KEEP=1
        exit 1
    fi
    say "digest after $3's restore ($1, $2): equal"
}

one_restore() { # size storage cache tool run stamp
    local size=$1 storage=$2 cache=$3 tool=$4 run=$5 stamp=$6 archive
    if [ "$storage" = local ]; then archive="$STORAGE_ARCHIVE_PATH/files_$stamp.tar"; else archive="$MINIO_ARCHIVE_PATH/minio_$stamp.tar"; fi
    prepare_cache "$cache" "$CASSANDRA_ARCHIVE_PATH/cassandra_$stamp.tar" "$archive"
    if [ "$tool" = runbook ]; then
        runbook_restore "$storage" "$stamp"
        measure "restore-$size-$storage-$cache-$tool-$run" runbook "${args[@]}"
    else
        measure "restore-$size-$storage-$cache-$tool-$run" guide bash tests/bench/guide-restore.sh "$storage" "$stamp"
    fi
    record "$size" "$storage" restore "$cache" "$tool" "$run" "$(set_bytes "$stamp" "$storage")"
    quiet_keyspace
    if [ "$tool" = runbook ]; then
        "$RUNBOOK" run cluster-hot-restore --vars "$sb/vars.json" --journal-dir "$WORK/journal" \
            --set "storage=$storage" --set "discard_safety=$stamp" --set "staging=$WORK/runbook-staging" 2>"$WORK/discard.err" \
            || { say "discard_safety failed:"; tail -5 "$WORK/discard.err" >&2; exit 1; }
    fi
    if [ "$run" = 1 ] && [ "$cache" = "${RESTORE_CACHES%%,*}" ]; then digest_check "$size" "$storage" "$tool"; fi
}

# runbook first in odd runs, the guide first in even ones: drift in the
# machine's load falls on both alike.
pair_order() { if [ $(($1 % 2)) = 1 ]; then echo "runbook guide"; else echo "guide runbook"; fi; }

for size in ${SIZES//,/ }; do
    start_size "$size"
    for storage in ${STORAGES//,/ }; do
        if [[ ",$OPS," == *,backup,* ]]; then
            for cache in ${CACHES//,/ }; do
                for run in $(seq "$RUNS"); do
                    for tool in $(pair_order "$run"); do one_backup "$size" "$storage" "$cache" "$tool" "$run"; done
                done
            done
        fi
        if [[ ",$OPS," == *,restore,* ]] && [[ ",$RESTORE_STORAGES," == *,$storage,* ]]; then
            # Each tool restores a set it made (a guide-made set has no manifest).
            runbook_backup "$storage"
            "${args[@]}" 2>"$WORK/set.err" || { tail -5 "$WORK/set.err" >&2; exit 1; }
            runbook_set=$(newest_set)
            guide_set=$(bash tests/bench/guide-backup.sh "$storage")
            for cache in ${RESTORE_CACHES//,/ }; do
                for run in $(seq "$RESTORE_RUNS"); do
                    for tool in $(pair_order "$run"); do
                        if [ "$tool" = runbook ]; then set=$runbook_set; else set=$guide_set; fi
                        one_restore "$size" "$storage" "$cache" "$tool" "$run" "$set"
                    done
                done
            done
            drop_set "$runbook_set"
            drop_set "$guide_set"
        fi
    done
    "$py" tests/sandbox/sandbox.py stop "$sb" >/dev/null
done

# ---------------------------------------------------------------- the report

python3 tests/bench/e2e_report.py "$results" "$WORK/sizes.tsv" "$write_mbs" "$read_mbs" "$can_drop" "$load_at_start" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$started_at" "SIZES=$SIZES RUNS=$RUNS RESTORE_RUNS=$RESTORE_RUNS STORAGES=$STORAGES OPS=$OPS CACHES=$CACHES RESTORE_CACHES=$RESTORE_CACHES RESTORE_STORAGES=$RESTORE_STORAGES"
