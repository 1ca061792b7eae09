#!/usr/bin/env bash
# Installs the real test servers (Apache Cassandra, OpenSearch) and their tools
# into the git-ignored .real-servers/ (once; each component's install.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
for installer in tests/real-servers/*/install.sh; do
  bash "$installer"
done
