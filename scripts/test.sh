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
from devtower.services.catalog import CATALOG
from daemons.install import ensure_packages
from tests.browser import PACKAGES as BROWSER  # the page's tests: chromium + chromedriver
ensure_packages(sorted({p for s in CATALOG.values() for p in s.packages} | set(BUILD_PACKAGES)
                       | set(BROWSER)))
PY
# the node image (~5 min to build idle, far more on a busy machine) is built here, outside any
# test's timeout: a cached, valid image costs one check; a missing or stale one is built on
# a throwaway LXD daemon (own state dir, bridge ocpb1 on 10.236.1.0/24), stopped by pid after
.venv/bin/python - <<'PY'
import socket
import tempfile
from pathlib import Path

from orchestrator.images import Cache, ensure_images, keys
from devtower.services import manager
from overcloud.settings import load_settings

s = load_settings(env={"OVERCLOUD_CONFIG": ""})
if Cache(s.undercloud.cache_dir).complete("node", keys(s).node) is None:
    state = Path(tempfile.mkdtemp(prefix="oc-prebuild-", dir="/tmp"))
    state.chmod(0o711)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    b = load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_STATE_DIR": str(state),
                           "OVERCLOUD_UNDERCLOUD_HOSTS": "lxd1",
                           "OVERCLOUD_UNDERCLOUD_BRIDGE_PREFIX": "ocpb",
                           "OVERCLOUD_UNDERCLOUD_SUBNET_PREFIX": "10.236",
                           "OVERCLOUD_UNDERCLOUD_HTTPS_PORT": str(port)})
    print("== node image: not cached, building it", flush=True)
    try:
        manager.up(b, ["lxd"])  # `services up lxd` builds the image as well
        ensure_images(b, say=print)
    finally:
        manager.down(b, ["lxd", "dockerd"])
        # the throwaway daemon's pool is a loop file of gigabytes: nothing of it stays
        import shutil

        from daemons.lxd import release_state_dir

        release_state_dir(state)
        shutil.rmtree(state, ignore_errors=True)
PY
echo "== ruff";        ruff check .
echo "== mypy";        mypy
echo "== import layers"; lint-imports
echo "== pytest"
# pytest exits 5 when it collected no test: that fails this script too (set -e)
exec pytest -p no:cacheprovider "$@"
