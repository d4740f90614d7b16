#!/usr/bin/env bash
# Create .venv and install the project with its dev tools and optional extras (the suite
# tests `dashboards push` through grafana-client); a no-op when nothing changed.
# Idempotent: re-run at will. Needs python3 >= 3.11 and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "python >= 3.11 is required")'
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
stamp=.venv/.overcloud-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import overcloud, agents, devlake' 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,grafana]"
  echo "$want" > "$stamp"
fi
