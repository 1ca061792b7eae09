#!/usr/bin/env bash
# Installs the OpenSearch test node into .real-servers/opensearch/ (once):
# lib/ = the jars pom.xml names and their dependencies (from Maven Central,
# through ~/.m2), classes/ = OpenSearchTestNode compiled with the machine's javac.
# Idempotent: a stamp keyed on pom.xml, the launcher's source and this script
# skips the work when nothing changed; any change installs again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../../.."
cache=.real-servers/opensearch
key=$(cat "$here/pom.xml" "$here/OpenSearchTestNode.java" "$here/install.sh" | sha256sum | cut -c1-16)
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
# The plugin by its full name: an unreachable registry is then reported as such,
# not as an unknown plugin prefix.
copy_dependencies=org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies
if ! mvn -B -q -Dstyle.color=never -f "$here/pom.xml" "$copy_dependencies" \
    -DoutputDirectory="$PWD/$cache/lib.partial" >"$log" 2>&1; then
  # mvn's first non-empty error line names what failed (artifact, repository).
  reason=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -m1 -E '^\[ERROR\] +[^ ]' || tail -n1 "$log")
  echo "tests/real-servers/opensearch/install.sh: mvn could not resolve OpenSearch from Maven Central: $reason" >&2
  exit 1
fi
mkdir -p "$cache/classes.partial"
javac --release 17 -d "$cache/classes.partial" -cp "$cache/lib.partial/*" "$here/OpenSearchTestNode.java"
rm -rf "$cache/lib" "$cache/classes"
mv "$cache/lib.partial" "$cache/lib"
mv "$cache/classes.partial" "$cache/classes"
touch "$stamp"
