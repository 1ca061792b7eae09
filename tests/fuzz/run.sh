#!/usr/bin/env bash
# Fuzzes one target for a fixed time. Not part of the CI run; see docs/fuzzing.md.
#
#   tests/fuzz/run.sh TARGET [SECONDS] [libFuzzer options...]
#   TARGET: verify_archive | extract_archive | step_options   (default 600 s)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); builds with `--sanitizer none`,
# which works on the stable toolchain. The corpus grown by the run goes to
# $RUNBOOK_FUZZ_WORK/TARGET (default /tmp/runbook-fuzz-work), crashes to
# $RUNBOOK_FUZZ_WORK/artifacts/; the committed seeds in tests/fuzz/corpus/TARGET
# are only read.
#
# Run as root, the fuzzer itself runs as `nobody`, with its scratch folders on
# a 2 GiB tmpfs: an extraction bug that escaped its folder could then write
# only where `nobody` may, and a runaway one only fill that tmpfs.
set -euo pipefail

target=${1:?usage: tests/fuzz/run.sh TARGET [SECONDS] [libFuzzer options...]}
seconds=${2:-600}
shift $(($# < 2 ? $# : 2))

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$fuzz_dir/../.." && pwd)
work=${RUNBOOK_FUZZ_WORK:-/tmp/runbook-fuzz-work}
scratch=${RUNBOOK_FUZZ_SCRATCH:-/tmp/runbook-fuzz-scratch}

(cd "$repo" && cargo fuzz build --fuzz-dir tests/fuzz --sanitizer none "$target")
host=$(rustc -vV | sed -n 's/^host: //p')
binary="$fuzz_dir/target/$host/release/$target"

mkdir -p "$work/$target" "$work/artifacts" "$scratch"
as_user=()
if [ "$(id -u)" = 0 ]; then
    mountpoint -q "$scratch" || mount -t tmpfs -o size=2g,mode=1777 tmpfs "$scratch"
    chmod 1777 "$scratch"
    chown -R 65534:65534 "$work/$target"
    chmod 1777 "$work/artifacts"
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi

cd "$work"
exec "${as_user[@]}" env RUNBOOK_FUZZ_SCRATCH="$scratch" "$binary" \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$target-" "$@" \
    "$work/$target" "$fuzz_dir/corpus/$target"
