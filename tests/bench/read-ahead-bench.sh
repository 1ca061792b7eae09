#!/usr/bin/env bash
# Read-ahead benchmark (not a test): tar_dir with its read-ahead (the
# default), without it (`read_ahead: 0`, the code path of before) and GNU
# `tar cf` + `sha256sum`, on a TheHive-like attachment folder (many small
# files in 256 folders, tests/sandbox/make-attachments.py), the three run one
# after the other in each round (paired), with a cold page cache (dropped
# before every run; root only) or a warm one. Prints one line per run and a
# Markdown table of medians: wall time, MB/s of file data, CPU (user +
# system) and peak RSS. docs/performance.md ("Read-ahead of small files")
# records a run.
#
# usage: tests/bench/read-ahead-bench.sh [WORKDIR]
#   FILES=40000   attachments to generate (1-200 KiB, log-uniform: ~1.5 GB)
#   RUNS=3        rounds
#   CACHE=cold    cold (drop the page cache before each run) or warm
#   KEEP_DATA=1   keep the generated folder for the next run
# Disk: the folder plus one archive of its size.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/runbook-read-ahead-bench}
files=${FILES:-40000}
runs=${RUNS:-3}
cache=${CACHE:-cold}
data=$work/attachments-$files
out=$work/out

(cd "$repo" && cargo build --release --quiet -p runbook-steps --example archive_bench)
bin=$repo/target/release/examples/archive_bench

if [ "$cache" = cold ] && [ ! -w /proc/sys/vm/drop_caches ]; then
    echo "CACHE=cold needs root (to write /proc/sys/vm/drop_caches)" >&2
    exit 2
fi
mkdir -p "$work"
if [ ! -d "$data" ]; then
    python3 "$repo/tests/sandbox/make-attachments.py" "$data" --files "$files" >&2
fi
bytes=$(du -sb "$data" | cut -f1)
results=$work/results.tsv
: > "$results"

declare -A commands=(
    ["tar_dir"]="$bin tar $out/a.tar --src $data --prefix files_S"
    ["tar_dir read_ahead 0"]="$bin tar $out/a.tar --src $data --prefix files_S --read-ahead 0"
    ["tar cf + sha256sum"]="tar cf $out/a.tar -C $data/.. --transform s,^attachments-$files,files_S, attachments-$files && sha256sum $out/a.tar > $out/a.tar.sha256"
)
order=("tar_dir read_ahead 0" "tar_dir" "tar cf + sha256sum")

echo "$files files, $bytes bytes; $runs rounds, $cache cache; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$runs"); do
    for case in "${order[@]}"; do
        rm -rf "$out"
        mkdir -p "$out"
        sync
        if [ "$cache" = cold ]; then echo 3 > /proc/sys/vm/drop_caches; fi
        /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" bash -c "${commands[$case]}" > /dev/null
        read -r seconds kib user system < <(tail -n 1 "$work/time.txt")
        printf '%s\t%s\t%s\t%s\n' "$case" "$seconds" "$kib" "$(echo "$user + $system" | bc)" >> "$results"
        printf '  round %s  %-22s %6ss  cpu %ss  rss %s KiB\n' "$round" "$case" "$seconds" "$(echo "$user + $system" | bc)" "$kib" >&2
    done
done
rm -rf "$out"
if [ "${KEEP_DATA:-0}" != 1 ]; then rm -rf "$data"; fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$results" "$bytes" "${order[@]}" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
size, order = int(sys.argv[2]), sys.argv[3:]
print("| case | median s | runs s | MB/s | CPU s (median) | peak RSS MiB |")
print("|---|---:|---|---:|---:|---:|")
for case in order:
    mine = [r for r in rows if r[0] == case]
    times = [float(r[1]) for r in mine]
    median = statistics.median(times)
    cpu = statistics.median(float(r[3]) for r in mine)
    rss = max(int(r[2]) for r in mine) / 1024
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"| {case} | {median:.2f} | {runs} | {size / median / 1e6:.0f} | {cpu:.2f} | {rss:.1f} |")
EOF
