#!/usr/bin/env bash
# The test suite on real services: installs what it needs, then lint, types, layers, tests.
# Every service the tests use is started by the tests themselves (own state dir, free
# loopback ports) and stopped by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
# every Debian package the suite uses, up front (no-op when present): on a fresh machine no
# test may find one missing because an earlier test happened not to install it
.venv/bin/python - <<'PY'
from orchestrator.images import BUILD_PACKAGES
from overcloud.services.catalog import CATALOG
from overcloud.services.install import ensure_packages
ensure_packages(sorted({p for s in CATALOG.values() for p in s.packages} | set(BUILD_PACKAGES)))
PY
echo "== ruff";        ruff check .
echo "== mypy";        mypy
echo "== import layers"; lint-imports
echo "== pytest"
# pytest exits 5 when it collected no test: that fails this script too (set -e)
exec pytest -p no:cacheprovider "$@"
