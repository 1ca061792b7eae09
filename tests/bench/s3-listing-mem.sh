#!/usr/bin/env bash
# Peak RSS and CPU time of runbook's per-object S3 paths on a bucket of OBJECTS
# small objects (keys `xx/<sha256 hex>` like TheHive's file storage, 1..2,000
# bytes) in the sandbox's S3 stand-in (moto_server): one workflow running only
# `s3_archive`, one only `mcli_mirror` (into a fresh folder), one only
# `s3_upload` with `report_objects: false, remove: true` of that folder, whose
# files are all in the bucket already (the restore's upload). Each binary given
# runs ROUNDS times, alternating, and prints per run: wall, user and system
# CPU seconds and GNU time's maximum resident set size.
# Usage: tests/bench/s3-listing-mem.sh OBJECTS [ROUNDS] [NAME=RUNBOOK]...
#   e.g. tests/bench/s3-listing-mem.sh 40000 3 before=/tmp/rb-before after=target/release/runbook
# (needs tests/setup-test-env.sh; default: after=target/release/runbook).
# HEAPTRACK=NAME runs that binary's first round under heaptrack too (archive
# and upload): prints the peak heap, and keeps heaptrack's data and its top
# peak contributors (heaptrack_print -p) in HEAPTRACK_OUT (default /tmp).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
objects=${1:?usage: s3-listing-mem.sh OBJECTS [ROUNDS] [NAME=RUNBOOK]...}
rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || binaries=("after=$root/target/release/runbook")
work=$(mktemp -d /tmp/s3-listing-mem.XXXXXX)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$root/.venv-tests/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
sleep 3
"$root/.venv-tests/bin/python" - "$port" "$objects" <<'PY'
import boto3, hashlib, random, sys, concurrent.futures as cf
from botocore.config import Config
port, count = sys.argv[1], int(sys.argv[2])
s3 = boto3.client('s3', endpoint_url=f'http://127.0.0.1:{port}', aws_access_key_id='test',
                  aws_secret_access_key='test', region_name='us-east-1',
                  config=Config(max_pool_connections=16))
s3.create_bucket(Bucket='thehive')
rnd = random.Random(7)
blob = rnd.randbytes(2000)
def put(i):
    body = blob[i % 97:][:1 + i % 1999] + i.to_bytes(4, 'big')
    digest = hashlib.sha256(body).hexdigest()
    s3.put_object(Bucket='thehive', Key=f'{digest[:2]}/{digest}', Body=body)
    return len(body)
with cf.ThreadPoolExecutor(16) as ex:
    total = sum(ex.map(put, range(count)))
print(f'bucket: {total} bytes in {count} objects', file=sys.stderr)
PY
cat >"$work/bench.rhai" <<'RHAI'
let cfg = config(#{ mode: "archive", out: "" });
if cfg.mode == "archive" {
    s3_archive(#{ source: "bench/thehive", dest: `${cfg.out}/minio_bench.tar` });
} else if cfg.mode == "mirror" {
    mcli_mirror(#{ source: "bench/thehive", dest: `${cfg.out}/mirror` });
} else {
    s3_upload(#{ folder: `${cfg.out}/mirror`, dest: "bench/thehive", remove: true,
                 report_objects: false });
}
RHAI
export MC_HOST_bench="http://test:test@127.0.0.1:$port"
out="$work/out"
heap=${HEAPTRACK_OUT:-/tmp}
mkdir -p "$out"
run() { # NAME RUNBOOK MODE [WRAPPER...]
    local name=$1 runbook=$2 mode=$3
    shift 3
    /usr/bin/time -f "$mode $name: %e s wall, %U s user, %S s sys, %M KiB peak RSS" \
        "$@" "$runbook" run "$work/bench.rhai" --journal-dir "$work/journal" -q \
        --set "mode=$mode" --set "out=$out"
}
for round in $(seq 1 "$rounds"); do
    for entry in "${binaries[@]}"; do
        name=${entry%%=*}
        runbook=${entry#*=}
        rm -rf "$out/mirror" "$out"/minio_bench.tar*
        run "$name" "$runbook" archive
        run "$name" "$runbook" mirror
        run "$name" "$runbook" upload
        if [ "$round" = 1 ] && [ "${HEAPTRACK:-}" = "$name" ]; then
            for mode in archive upload; do
                rm -f "$out"/minio_bench.tar*
                run "$name" "$runbook" "$mode" heaptrack -o "$heap/heap-$name-$mode" >/dev/null
                heaptrack_print -f "$heap/heap-$name-$mode".* -p 1 -a 0 -T 0 -n 6 -s 2 \
                    >"$heap/heap-$name-$mode.txt"
                grep -E '^peak heap memory consumption|^peak RSS' "$heap/heap-$name-$mode.txt"
            done
        fi
    done
done
rm -rf "$out"
uptime
