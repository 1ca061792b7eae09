#!/usr/bin/env bash
# Installs the servers the tests start on loopback into .venv-tests (once):
# moto_server (a real S3 API) and noida-db (an Elasticsearch 8 emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-tests
# The stamp names the requirements it installed: a changed list installs again.
stamp="$venv/.installed-$(sha256sum tests/requirements.txt | cut -c1-16)"
if [ -f "$stamp" ]; then exit 0; fi
echo "setting up the test servers in $venv (first run only)" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
touch "$stamp"
