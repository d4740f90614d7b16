#!/usr/bin/env bash
# The test suite on real services: installs what it needs, then lint, types, layers, tests.
# Every service the tests use is started by the tests themselves (own state dir, free
# loopback ports) and stopped by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
# Debian packages the integration tests start (no-op when present)
.venv/bin/python -c 'from overcloud.services.install import ensure_packages as e; e(["influxdb", "victoria-metrics"])'
echo "== ruff";        ruff check .
echo "== mypy";        mypy
echo "== import layers"; lint-imports
echo "== pytest"
# pytest exits 5 when it collected no test: that fails this script too (set -e)
exec pytest -p no:cacheprovider "$@"
