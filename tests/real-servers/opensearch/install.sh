#!/usr/bin/env bash
# Installs the OpenSearch test node into .real-servers/opensearch/ (once):
# lib/ = the jars pom.xml names and their dependencies (from Maven Central,
# through ~/.m2), classes/ = OpenSearchTestNode compiled with the machine's javac.
# Idempotent: a stamp keyed on pom.xml and the launcher's source skips the work
# when nothing changed; a changed pom or launcher installs again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../../.."
cache=.real-servers/opensearch
key=$(cat "$here/pom.xml" "$here/OpenSearchTestNode.java" | sha256sum | cut -c1-16)
stamp="$cache/.installed-$key"
if [ -f "$stamp" ]; then exit 0; fi
for tool in mvn javac java; do
  if ! command -v "$tool" >/dev/null; then
    echo "tests/real-servers/opensearch/install.sh: '$tool' is not on PATH (install Maven and a JDK 17)" >&2
    exit 1
  fi
done
echo "installing OpenSearch for the tests into $cache (first run only)" >&2
mkdir -p "$cache"
rm -rf "$cache/lib.partial" "$cache/classes.partial" "$cache"/.installed-*
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! mvn -B -q -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$PWD/$cache/lib.partial" >"$log" 2>&1; then
  reason=$(grep -m1 '^\[ERROR\]' "$log" || tail -n1 "$log")
  echo "tests/real-servers/opensearch/install.sh: mvn could not resolve OpenSearch from Maven Central: $reason" >&2
  exit 1
fi
mkdir -p "$cache/classes.partial"
javac --release 17 -d "$cache/classes.partial" -cp "$cache/lib.partial/*" "$here/OpenSearchTestNode.java"
rm -rf "$cache/lib" "$cache/classes"
mv "$cache/lib.partial" "$cache/lib"
mv "$cache/classes.partial" "$cache/classes"
touch "$stamp"
