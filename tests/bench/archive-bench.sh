#!/usr/bin/env bash
# Archive benchmark (not a test): runbook's tar_dir and verify_archive against
# GNU tar, sha256sum and the reference copy-then-tar, on two generated
# datasets (see gen_datasets.py). Prints a Markdown table of medians over
# RUNS runs, with ratios, CPU time (user + system) and peak RSS;
# docs/performance.md records a run.
#
# usage: tests/bench/archive-bench.sh [WORKDIR]
#   RUNS=3        runs per case (the median is reported)
#   SCALE=1       dataset size multiplier (1 = A ~2 GiB, B ~1.5 GiB)
#   DROP_CACHES=1 drop the page cache before every run (root only; default:
#                 warm cache, the sources are in memory)
#   KEEP_DATA=1   keep the generated datasets for the next run
#   NICE=-10      niceness of the measured commands (all alike), so other work
#                 on a shared machine disturbs them less (negative: root only)
# Disk: the datasets plus at most two dataset-sized outputs (~7.5 GiB at SCALE=1).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/runbook-archive-bench}
runs=${RUNS:-3}
scale=${SCALE:-1}
data=$work/data
out=$work/out
results=$work/results.tsv

(cd "$repo" && cargo build --release --quiet -p runbook-steps --example archive_bench)
bin=$repo/target/release/examples/archive_bench

mkdir -p "$work"
if [ ! -f "$data/.generated-$scale" ]; then
    rm -rf "$data"
    mkdir -p "$data"
    python3 "$repo/tests/bench/gen_datasets.py" "$data" "$scale"
    touch "$data/.generated-$scale"
fi
: > "$results"

# measure GROUP CASE BYTES COMMAND: runs COMMAND (a bash string) $runs times
# with a fresh $out, records "group case bytes median_s max_rss_kib median_cpu_s".
measure() {
    local group=$1 case=$2 bytes=$3 command=$4 times=() cpus=() rss=0
    for _ in $(seq "$runs"); do
        rm -rf "$out"
        mkdir -p "$out"
        sync
        if [ "${DROP_CACHES:-0}" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
        if ! nice -n "${NICE:-0}" /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" bash -c "$command" > /dev/null 2> "$work/stderr.txt"; then
            echo "failed: $command" >&2
            cat "$work/stderr.txt" >&2
            exit 1
        fi
        read -r seconds kib user system < <(tail -n 1 "$work/time.txt")
        times+=("$seconds")
        cpus+=("$(echo "$user + $system" | bc)")
        if [ "$kib" -gt "$rss" ]; then rss=$kib; fi
    done
    local median cpu
    median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    cpu=$(printf '%s\n' "${cpus[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$group" "$case" "$bytes" "$median" "$rss" "$cpu" >> "$results"
    printf '  %-34s %8ss  (runs: %s)\n' "$group: $case" "$median" "${times[*]}" >&2
}

tables=("$data"/A/data/thehive/*/)
a_bytes=$(du -sb --exclude=snapshots "$data/A/data/thehive" | cut -f1)
b_bytes=$(du -sb "$data/B/files" | cut -f1)
entries=""
copies="mkdir -p $out/stage/cassandra_S/thehive"
for table in "${tables[@]}"; do
    name=$(basename "$table")
    entries+=" --entry ${table}snapshots/bench=cassandra_S/thehive/$name"
    copies+=" && mkdir $out/stage/cassandra_S/thehive/$name && cp -p ${table}snapshots/bench/* $out/stage/cassandra_S/thehive/$name/"
done

echo "dataset A: $a_bytes bytes; dataset B: $b_bytes bytes; $runs runs per case" >&2

# Verification first, on archives made once outside the timing.
for set in A B; do
    verify_dir=$work/verify
    rm -rf "$verify_dir"
    mkdir -p "$verify_dir"
    if [ $set = A ]; then
        "$bin" tar "$verify_dir/a.tar" --src "$data/A/data/thehive" --exclude snapshots > /dev/null
        bytes=$a_bytes
    else
        "$bin" tar "$verify_dir/a.tar" --src "$data/B/files" > /dev/null
        bytes=$b_bytes
    fi
    measure "$set verify" "sha256sum" "$bytes" "sha256sum $verify_dir/a.tar"
    measure "$set verify" "tar tf + sha256sum" "$bytes" "tar tf $verify_dir/a.tar && sha256sum $verify_dir/a.tar"
    measure "$set verify" "verify_archive" "$bytes" "$bin verify $verify_dir/a.tar"
    rm -rf "$verify_dir"
done

measure "A create" "tar cf" "$a_bytes" "tar cf $out/a.tar -C $data/A/data --exclude=snapshots thehive"
measure "A create" "tar cf + sync" "$a_bytes" "tar cf $out/a.tar -C $data/A/data --exclude=snapshots thehive && sync $out/a.tar"
measure "A create" "tar cf + sha256sum" "$a_bytes" "tar cf $out/a.tar -C $data/A/data --exclude=snapshots thehive && sha256sum $out/a.tar > $out/a.tar.sha256"
measure "A create" "tar_dir" "$a_bytes" "$bin tar $out/a.tar --src $data/A/data/thehive --exclude snapshots"
measure "A create" "dd conv=fsync" "$a_bytes" "dd if=/dev/zero of=$out/dd bs=1M count=$((a_bytes >> 20)) conv=fsync"
measure "A cassandra" "cp -p + tar cf + rm -rf" "$a_bytes" "$copies && tar cf $out/c.tar -C $out/stage cassandra_S && rm -rf $out/stage"
measure "A cassandra" "tar_dir entries" "$a_bytes" "$bin tar $out/c.tar $entries"

measure "B create" "tar cf" "$b_bytes" "tar cf $out/b.tar -C $data/B files"
measure "B create" "tar cf + sync" "$b_bytes" "tar cf $out/b.tar -C $data/B files && sync $out/b.tar"
measure "B create" "tar cf + sha256sum" "$b_bytes" "tar cf $out/b.tar -C $data/B files && sha256sum $out/b.tar > $out/b.tar.sha256"
measure "B create" "tar_dir" "$b_bytes" "$bin tar $out/b.tar --src $data/B/files"
measure "B create" "dd conv=fsync" "$b_bytes" "dd if=/dev/zero of=$out/dd bs=1M count=$((b_bytes >> 20)) conv=fsync"
measure "B copy-then-tar" "cp -rp + tar cf + rm -rf" "$b_bytes" "mkdir $out/stage && cp -rp $data/B/files $out/stage/files_S && tar cf $out/b.tar -C $out/stage files_S && rm -rf $out/stage"
measure "B copy-then-tar" "tar_dir" "$b_bytes" "$bin tar $out/b.tar --src $data/B/files --prefix files_S"

rm -rf "$out"
if [ "${KEEP_DATA:-0}" != 1 ]; then rm -rf "$data"; fi

# The table: each group's first case is its reference (ratio = time / reference time).
python3 - "$results" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
print("| group | case | median s | MB/s | time ratio | CPU s | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|")
reference = {}
for group, case, size, seconds, rss, cpu in rows:
    seconds, size = float(seconds), int(size)
    reference.setdefault(group, seconds)
    rate = size / seconds / 1e6 if seconds else float("inf")
    ratio = seconds / reference[group] if reference[group] else float("nan")
    print(f"| {group} | {case} | {seconds:.2f} | {rate:.0f} | {ratio:.2f} | {float(cpu):.2f} | {int(rss) / 1024:.1f} |")
EOF
