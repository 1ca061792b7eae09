#!/usr/bin/env bash
# s3_upload of a folder whose files are all already in the bucket (what the
# S3 restore's upload of the attachment folder meets): FILES files of
# 1..100,000 bytes (mean 50 KB) in 251 subfolders, put into the sandbox's S3
# stand-in (moto_server) with boto3 (single-part ETags, as the sandbox has
# them), then `s3_upload(#{ folder, dest, remove: true, report_objects: false })`
# run ROUNDS times by each binary, alternating. Prints, per run, wall and CPU
# time and peak RSS (GNU time -v), the CPU time moto_server spent answering
# (from /proc), and the step's uploaded/skipped counts.
# Usage: tests/bench/s3-upload-skip.sh [FILES] [ROUNDS] (needs
# tests/setup-test-env.sh). BEFORE=path/to/runbook AFTER=path/to/runbook pick
# the two binaries (default: AFTER=target/release/runbook, no BEFORE).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
files=${1:-10000}
rounds=${2:-3}
after=${AFTER:-$root/target/release/runbook}
before=${BEFORE:-}
work=$(mktemp -d /tmp/s3-upload-skip.XXXXXX)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$root/.venv-tests/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
sleep 3
"$root/.venv-tests/bin/python" - "$port" "$files" "$work/folder" <<'PY'
import boto3, os, sys, random, concurrent.futures as cf
port, count, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s3 = boto3.client('s3', endpoint_url=f'http://127.0.0.1:{port}', aws_access_key_id='test',
                  aws_secret_access_key='test', region_name='us-east-1')
s3.create_bucket(Bucket='thehive')
rnd = random.Random(7)
sizes = [rnd.randint(1, 100_000) for _ in range(count)]
def put(i):
    name = f'{i % 251:02x}/{i:05d}.bin'
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = os.urandom(sizes[i])
    with open(path, 'wb') as f:
        f.write(body)
    s3.put_object(Bucket='thehive', Key=f'files/{name}', Body=body)
with cf.ThreadPoolExecutor(16) as ex:
    list(ex.map(put, range(count)))
print(f'bucket and folder: {sum(sizes)} bytes in {count} files')
PY
cat >"$work/bench.rhai" <<'RHAI'
let cfg = config(#{ folder: "" });
let done = s3_upload(#{ folder: cfg.folder, dest: "bench/thehive/files", remove: true, report_objects: false });
log_info(`uploaded ${done.uploaded}, skipped ${done.skipped}, removed ${done.removed}`);
RHAI
export MC_HOST_bench="http://test:test@127.0.0.1:$port"
# CPU seconds moto_server has used so far (utime + stime, in clock ticks).
moto_ticks() { awk '{print $14 + $15}' "/proc/$moto/stat"; }
run() {
    local name=$1 binary=$2 ticks
    ticks=$(moto_ticks)
    /usr/bin/time -v -o "$work/time" "$binary" run "$work/bench.rhai" \
        --journal-dir "$work/journal" --set "folder=$work/folder" 2>&1 |
        grep -o "uploaded [0-9]*, skipped [0-9]*, removed [0-9]*"
    awk -v name="$name" -F': ' '
        /User time/ {user=$2} /System time/ {sys=$2} /Elapsed \(wall/ {wall=$2}
        /Maximum resident/ {rss=$2}
        END {printf "%s: %s wall, %s s user, %s s sys, %s KiB peak RSS", name, wall, user, sys, rss}
    ' "$work/time"
    awk -v t="$(( $(moto_ticks) - ticks ))" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf ", moto_server %.2f s CPU\n", t / hz}'
}
for round in $(seq "$rounds"); do
    echo "round $round"
    if [ -n "$before" ]; then run before "$before"; fi
    run after "$after"
done
uptime
