#!/usr/bin/env bash
# S3 attachments into minio_STAMP.tar: s3_mode "stream" (s3_archive) against
# "staging" (mcli_mirror, tar_dir, rm -r), on one bucket of OBJECTS objects of
# 1..100,000 bytes (mean 50 KB: 20,000 objects = about 1 GB) in the sandbox's S3
# stand-in (moto_server). Prints, per mode, wall time, peak RSS and the bytes the
# process wrote to disk (GNU time's "file system outputs" = write_bytes / 512).
# Usage: tests/bench/s3-stream-vs-staging.sh [OBJECTS] (needs tests/setup-test-env.sh
# and a built runbook; RUNBOOK=path/to/runbook to pick one, e.g. target/release/runbook).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
objects=${1:-20000}
runbook=${RUNBOOK:-$root/target/release/runbook}
work=$(mktemp -d /tmp/s3-stream-bench.XXXXXX)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$root/.venv-tests/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
sleep 3
"$root/.venv-tests/bin/python" - "$port" "$objects" <<'PY'
import boto3, os, sys, random, concurrent.futures as cf
port, count = sys.argv[1], int(sys.argv[2])
s3 = boto3.client('s3', endpoint_url=f'http://127.0.0.1:{port}', aws_access_key_id='test',
                  aws_secret_access_key='test', region_name='us-east-1')
s3.create_bucket(Bucket='thehive')
rnd = random.Random(7)
sizes = [rnd.randint(1, 100_000) for _ in range(count)]
blob = os.urandom(100_000)
def put(i):
    s3.put_object(Bucket='thehive', Key=f'attachments/{i % 251:02x}/{i:05d}.bin', Body=blob[:sizes[i]])
with cf.ThreadPoolExecutor(16) as ex:
    list(ex.map(put, range(count)))
print(f'bucket: {sum(sizes)} bytes in {count} objects')
PY
cat >"$work/bench.rhai" <<'RHAI'
let cfg = config(#{ mode: "stream", out: "" });
let top = "minio_20261207_04h00m00s";
let dest = `${cfg.out}/${top}.tar`;
if cfg.mode == "stream" {
    s3_archive(#{ source: "bench/thehive", dest: dest, prefix: top });
} else {
    let staging = `${cfg.out}/${top}`;
    mcli_mirror(#{ source: "bench/thehive", dest: staging });
    tar_dir(#{ dest: dest, src: staging, prefix: top });
    exec(#{ cmd: "rm", args: ["-r", "--", staging] });
}
RHAI
export MC_HOST_bench="http://test:test@127.0.0.1:$port"
for mode in stream staging; do
    out="$work/out-$mode"; mkdir -p "$out"
    /usr/bin/time -f "$mode: %e s wall, %M KiB peak RSS, written $((512)) x %O bytes, %U s user, %S s sys" \
        "$runbook" run "$work/bench.rhai" --journal-dir "$work/journal" -q \
        --set "mode=$mode" --set "out=$out"
    ls -l "$out"
    rm -rf "$out"
done
uptime
