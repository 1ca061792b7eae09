#!/usr/bin/env bash
# Self-test of the sandbox stand-ins (tests/sandbox): generates a data folder and an
# attachment folder in a temporary directory, drives the stand-in nodetool and cqlsh
# through their normal paths and every fault knob, and checks the results.
#   tests/sandbox/selftest.sh          # prints one line per check, exits 1 on the first failure
# Needs only bash, coreutils and python3.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
hang_group=""
# Never leave a hanging stand-in behind, even when a check fails half-way.
trap '[ -n "$hang_group" ] && kill -KILL -- "-$hang_group" 2>/dev/null; rm -rf "$work"' EXIT

export SANDBOX_CASSANDRA_DATA="$work/cassandra"
export SANDBOX_STATE="$work/state"
export HOME="$work/home"   # so no real ~/.cassandra/cqlshrc is read
mkdir -p "$HOME"
# Knobs from the caller's environment would change the answers checked below.
unset SANDBOX_SNAPSHOT_FAILS SANDBOX_CLEARSNAPSHOT_FAILS SANDBOX_NODE_DOWN SANDBOX_NODE_STATE \
      SANDBOX_NODETOOL_UNREACHABLE SANDBOX_NODETOOL_HANG SANDBOX_NODETOOL_DELAY \
      SANDBOX_CQLSH_UNREACHABLE SANDBOX_CQLSH_EMPTY SANDBOX_CQLSH_DELAY SANDBOX_CQLSH_NO_WARNING \
      SANDBOX_CQL_AUTH SANDBOX_CQL_USER SANDBOX_CQL_PASSWORD SANDBOX_RELEASE_VERSION

nodetool="$here/bin/nodetool"
cqlsh="$here/bin/cqlsh"
checks=0

ok() { checks=$((checks + 1)); echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; exit 1; }
# expect_rc WANT CMD...: runs CMD with stdout/stderr in $work/out and $work/err.
expect_rc() {
    local want="$1"; shift
    local rc=0
    "$@" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" = "$want" ] || { cat "$work/out" "$work/err" >&2; fail "exit $rc, wanted $want: $*"; }
}
contains() { grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "$1 lacks: $2"; }; }
lacks() { if grep -qF -- "$2" "$1"; then cat "$1" >&2; fail "$1 has: $2"; fi; }

# --- generators ---------------------------------------------------------------
"$here/make-cassandra-data.py" "$SANDBOX_CASSANDRA_DATA" --size-mb 2 >/dev/null
"$here/make-cassandra-data.py" "$work/cassandra2" --size-mb 2 >/dev/null
sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
[ "$(sums "$SANDBOX_CASSANDRA_DATA")" = "$(sums "$work/cassandra2")" ] || fail "data generation is not deterministic"
ok "make-cassandra-data.py is deterministic"
ks="$SANDBOX_CASSANDRA_DATA/data/thehive"
tables=$(find "$ks" -mindepth 1 -maxdepth 1 -type d | wc -l)
[ "$tables" = 9 ] || fail "expected 9 table folders, got $tables"
for dir in "$ks"/*; do
    [[ "$(basename "$dir")" =~ ^[a-z_]+-[0-9a-f]{32}$ ]] || fail "bad table folder name $dir"
    for component in Data.db Index.db Summary.db Filter.db Statistics.db CompressionInfo.db Digest.crc32 TOC.txt; do
        [ -f "$dir/nb-1-big-$component" ] || fail "missing $dir/nb-1-big-$component"
    done
done
ok "9 table folders <table>-<32 hex> with every nb-1-big component"
expect_rc 1 "$here/make-cassandra-data.py" "$SANDBOX_CASSANDRA_DATA"
ok "make-cassandra-data.py refuses a non-empty folder"

"$here/make-attachments.py" "$work/files" --files 40 >/dev/null
"$here/make-attachments.py" "$work/files2" --files 40 >/dev/null
[ "$(sums "$work/files")" = "$(sums "$work/files2")" ] || fail "attachment generation is not deterministic"
[ "$(find "$work/files" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 256 ] || fail "expected 256 subfolders"
[ "$(find "$work/files" -type f | wc -l)" = 40 ] || fail "expected 40 files"
[ -n "$(find "$work/files" -type f -empty)" ] || fail "no empty attachment"
[ -n "$(find "$work/files" -type f -name '* *')" ] || fail "no attachment name with a space"
[ -n "$(find "$work/files" -type f -name '*é*')" ] || fail "no non-ASCII attachment name"
ok "make-attachments.py: deterministic, 256 subfolders, empty / spaced / non-ASCII names"

# --- nodetool -----------------------------------------------------------------
tag=cassandra_20261126_01h15m00s
expect_rc 0 "$nodetool" snapshot -t "$tag" thehive
contains "$work/out" "Requested creating snapshot(s) for [thehive] with snapshot name [$tag] and options {skipFlush=false}"
contains "$work/out" "Snapshot directory: $tag"
for dir in "$ks"/*; do
    snap="$dir/snapshots/$tag"
    [ -f "$snap/manifest.json" ] && [ -f "$snap/schema.cql" ] || fail "no manifest.json/schema.cql in $snap"
    for file in "$dir"/nb-*; do
        [ "$(stat -c %i "$file")" = "$(stat -c %i "$snap/$(basename "$file")")" ] || fail "$snap/$(basename "$file") is not a hard link"
    done
done
[ -z "$(find "$SANDBOX_CASSANDRA_DATA/data/system" -name snapshots)" ] || fail "snapshot of thehive touched system"
ok "snapshot hard-links every table's files into snapshots/TAG with manifest.json and schema.cql"

expect_rc 2 "$nodetool" snapshot -t "$tag" thehive
contains "$work/err" "error: Snapshot $tag already exists."
contains "$work/err" "-- StackTrace --"
expect_rc 1 "$nodetool" snapshot --tag other nosuchkeyspace
contains "$work/err" "nodetool: Keyspace nosuchkeyspace does not exist"
ok "snapshot: existing tag fails with exit 2, unknown keyspace with exit 1, like Cassandra 4.1.10"

expect_rc 0 "$nodetool" listsnapshots
contains "$work/out" "$tag"
expect_rc 0 "$nodetool" clearsnapshot -t "$tag" thehive
contains "$work/out" "Requested clearing snapshot(s) for [thehive] with snapshot name [$tag]"
[ -z "$(find "$ks" -path "*/snapshots/$tag")" ] || fail "clearsnapshot left $tag"
expect_rc 2 "$nodetool" clearsnapshot
contains "$work/err" "Specify snapshot name or --all"
ok "clearsnapshot removes the snapshot; without -t or --all it fails like Cassandra"

expect_rc 0 "$nodetool" status
[ "$(grep -c '^UN  127\.0\.0\.[123] ' "$work/out")" = 3 ] || fail "status: expected 3 UN lines"
contains "$work/out" "Datacenter: datacenter1"
expect_rc 0 "$nodetool" version
contains "$work/out" "ReleaseVersion: 4.1.3"
ok "status shows 3 UN nodes; version is 4.1.3"

# --- nodetool fault knobs -----------------------------------------------------
mkdir -p "$SANDBOX_STATE"
touch "$SANDBOX_STATE/snapshot-fails"
expect_rc 2 "$nodetool" snapshot -t broken thehive
contains "$work/err" "No space left on device"
[ -n "$(find "$ks" -path '*/snapshots/broken')" ] || fail "partial failure left no partial snapshot"
echo clean >"$SANDBOX_STATE/snapshot-fails"
expect_rc 2 "$nodetool" snapshot -t broken2 thehive
[ -z "$(find "$ks" -path '*/snapshots/broken2')" ] || fail "clean failure left a snapshot"
rm "$SANDBOX_STATE/snapshot-fails"
"$nodetool" clearsnapshot --all >/dev/null
ok "knob snapshot-fails: partial (default) leaves half a snapshot, clean leaves none; exit 2"

SANDBOX_NODE_DOWN=1 expect_rc 0 "$nodetool" status
contains "$work/out" "DN  127.0.0.3"
echo 127.0.0.2 >"$SANDBOX_STATE/node-down"
expect_rc 0 "$nodetool" status
contains "$work/out" "DN  127.0.0.2"
rm "$SANDBOX_STATE/node-down"
ok "knob node-down marks a node DN"

SANDBOX_NODETOOL_UNREACHABLE=1 expect_rc 1 "$nodetool" status
contains "$work/err" "Failed to connect to '127.0.0.1:7199'"
ok "knob nodetool-unreachable: JMX connection refused, exit 1"

# Hang: SIGTERM is ignored by the tool and its child; only killing the group ends it.
# Started from a subshell so this shell does not report the killed job.
(SANDBOX_NODETOOL_HANG=snapshot setsid "$nodetool" snapshot -t hang thehive >"$work/hang.out" 2>&1 &)
for _ in $(seq 100); do [ -s "$SANDBOX_STATE/nodetool-hang.pids" ] && break; sleep 0.1; done
read -r parent child _ <"$SANDBOX_STATE/nodetool-hang.pids" || fail "the hanging nodetool did not start"
hang_group="$parent"
kill -TERM "$parent"; sleep 0.3
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
alive "$parent" || fail "hanging nodetool died on SIGTERM"
alive "$child" || fail "hanging nodetool's child is missing"
kill -KILL -- "-$parent"
hang_group=""
sleep 0.3
! alive "$parent" || fail "nodetool survived killing its group"
! alive "$child" || fail "child survived killing the group"
rm "$SANDBOX_STATE/nodetool-hang.pids"
ok "knob nodetool-hang ignores SIGTERM, has a child, dies with its process group"

# --- cqlsh --------------------------------------------------------------------
expect_rc 0 "$cqlsh" 127.0.0.1 -e "DESCRIBE KEYSPACE thehive"
head -n1 "$work/out" | grep -q '^WARNING: ' || fail "no WARNING line first"
contains "$work/out" "CREATE KEYSPACE thehive WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '3'}"
[ "$(grep -c '^CREATE TABLE thehive\.' "$work/out")" = 9 ] || fail "expected 9 CREATE TABLE"
for dir in "$ks"/*; do
    contains "$work/out" "CREATE TABLE thehive.$(basename "$dir" | cut -d- -f1) ("
done
ok "cqlsh DESCRIBE KEYSPACE: WARNING line, keyspace, one CREATE TABLE per table folder"

expect_rc 0 "$cqlsh" -e "SELECT release_version FROM system.local"
grep -q '^ *4\.1\.3$' "$work/out" || fail "no release_version row"
expect_rc 2 "$cqlsh" -e "DESCRIBE KEYSPACE nope"
contains "$work/err" "'nope' not found in keyspaces"
ok "cqlsh SELECT release_version; unknown keyspace fails with exit 2"

# Auth: the password only in a 0600 cqlshrc, never on the command line.
export SANDBOX_CQL_USER=admin SANDBOX_CQL_PASSWORD='pa ss:w0rd'
expect_rc 1 "$cqlsh" 127.0.0.1 -e "DESCRIBE KEYSPACE thehive" </dev/null
contains "$work/err" "AuthenticationFailed('Remote end requires authentication')"
expect_rc 1 "$cqlsh" 127.0.0.1 -u admin -p wrong -e "DESCRIBE KEYSPACE thehive"
contains "$work/err" "Provided username admin and/or password are incorrect"
(umask 077; printf '[authentication]\nusername = admin\npassword = %s\n' "$SANDBOX_CQL_PASSWORD" >"$work/cqlshrc")
expect_rc 0 "$cqlsh" 127.0.0.1 --cqlshrc "$work/cqlshrc" -e "DESCRIBE KEYSPACE thehive"
contains "$work/out" "CREATE KEYSPACE thehive"
mkdir -p "$HOME/.cassandra" && cp -p "$work/cqlshrc" "$HOME/.cassandra/cqlshrc"
expect_rc 0 "$cqlsh" 127.0.0.1 -e "DESCRIBE KEYSPACE thehive"
rm "$HOME/.cassandra/cqlshrc"
unset SANDBOX_CQL_USER SANDBOX_CQL_PASSWORD
echo 'admin:other' >"$SANDBOX_STATE/cql-auth"
expect_rc 0 "$cqlsh" 127.0.0.1 -u admin -p other -e "DESCRIBE KEYSPACE thehive"
rm "$SANDBOX_STATE/cql-auth"
ok "cqlsh auth: missing / wrong credentials exit 1; cqlshrc (--cqlshrc or ~/.cassandra) and -u/-p accepted"

SANDBOX_CQLSH_UNREACHABLE=1 expect_rc 1 "$cqlsh" 127.0.0.1 -e "DESCRIBE KEYSPACE thehive"
contains "$work/err" "Connection error: ('Unable to connect to any servers'"
SANDBOX_CQLSH_EMPTY=1 expect_rc 0 "$cqlsh" 127.0.0.1 -e "DESCRIBE KEYSPACE thehive"
[ ! -s "$work/out" ] || fail "cqlsh-empty printed something"
SANDBOX_CQLSH_NO_WARNING=1 expect_rc 0 "$cqlsh" 127.0.0.1 -e "DESCRIBE KEYSPACE thehive"
lacks "$work/out" "WARNING"
ok "knobs cqlsh-unreachable (exit 1), cqlsh-empty, cqlsh-no-warning"

# --- invocation log -----------------------------------------------------------
log="$SANDBOX_STATE/invocations.log"
python3 - "$log" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
assert any(r["argv"][:2] == ["nodetool", "snapshot"] for r in records), "no snapshot recorded"
assert any("--cqlshrc" in r["argv"] for r in records), "no cqlshrc run recorded"
EOF
lacks "$log" "pa ss:w0rd"
ok "invocations.log records every argv (and the cqlshrc password never reached one)"

echo "sandbox selftest: $checks checks passed"
