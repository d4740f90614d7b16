#!/usr/bin/env bash
# The main job on one machine: broker, InfluxDB, DevLake, two LXD UnderCloud hosts, the
# orchestrator and the DevTower; then, as the developer through the DevTower's API with a
# token of their own, an OverCloud request (examples/my-overcloud.yaml: 2 nodes, WordPress on
# nginx + MariaDB) applied and followed until ready, its URL, and the latest samples read
# back from its DevLake; where to look (`overcloud top`, Grafana dashboards as code, the alert
# rules in force); and an "overload act": a busy loop in the web node overloads its host, the
# node-overloaded rule fires, the orchestrator moves the node, the site stays up; then one
# more app replica applied live (the same document with `app.replicas` + 1) while the site is
# probed every 100 ms.
# `scripts/demo.sh stop` deletes the OverCloud and stops everything it started (by pid).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
OC=.venv/bin/overcloud
REQUEST=${REQUEST:-examples/my-overcloud.yaml}
NAME=$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' "$REQUEST")
export OVERCLOUD_AGENT_INTERVAL=${OVERCLOUD_AGENT_INTERVAL:-2}
export OVERCLOUD_ALERTS_RULES=${OVERCLOUD_ALERTS_RULES:-$PWD/examples/alert-rules.yaml}
if [ "${1:-}" = "stop" ]; then
  $OC delete "$NAME" --wait 2>/dev/null || true
  exec $OC services down
fi
# curl below reads the OverCloud's URL as a developer would (a minimal Debian has none)
.venv/bin/python -c 'from daemons.install import ensure_packages as e; e(["curl"])'
echo "== services (installs what is missing; first run builds the node image, minutes)"
$OC services up kafka influxdb devlake lxd edge orchestrator agent alertmanager alerts devtower
OWNER=$(sed -n 's/^owner: *\([^ #]*\).*/\1/p' "$REQUEST")
TOWER=$(.venv/bin/python -c 'from overcloud.settings import load_settings; print(load_settings().devtower.url)')
echo "== the developer's door: a DevTower token for $OWNER (shown once, only its hash is kept)"
TOKEN=$($OC tower token create --owner "$OWNER" --role developer --expires 7d)
# from here the developer's commands go through the DevTower's API, as from their laptop
DEV="env OVERCLOUD_TOWER=$TOWER OVERCLOUD_TOKEN=$TOKEN $OC"
echo "== OverCloud request through $TOWER: $REQUEST"
$DEV request validate "$REQUEST"
if ! $DEV show "$NAME" >/dev/null 2>&1; then
  $DEV request apply "$REQUEST" --wait
fi
$DEV list
echo "== what the developer sees"
URL=$($DEV list --json | .venv/bin/python -c 'import json,sys; print(next(o["url"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$NAME")
curl -fsS -o /dev/null -w "GET ${URL}wp-admin/install.php → %{http_code} (%{time_total}s)\n" -L "${URL}wp-admin/install.php"
echo "== its DevLake (resource samples of every node, through Kafka into InfluxDB)"
for _ in $(seq 1 60); do
  $DEV metrics latest --overcloud "$NAME" --measurement resource_instance >/dev/null 2>&1 && break
  sleep 0.5
done
$DEV metrics latest --overcloud "$NAME"
echo "== where to look"
$DEV top --overcloud "$NAME" --once || true
$OC dashboards export ./grafana | tail -3
$OC alerts list
echo
echo "== overload act: a busy loop in $NAME's web node"
WEB=$($OC list --json | .venv/bin/python -c 'import json,sys; o=next(o for o in json.load(sys.stdin) if o["name"] == sys.argv[1]); print(sorted(o["nodes"])[-1])' "$NAME")
BEFORE=$($OC list --json | .venv/bin/python -c 'import json,sys; o=next(o for o in json.load(sys.stdin) if o["name"] == sys.argv[1]); print(o["nodes"][sys.argv[2]])' "$NAME" "$WEB")
OTHER=$([ "$BEFORE" = lxd1 ] && echo lxd2 || echo lxd1)
# host sizes as an operator declares them: the other host is the big one (placement, the
# host agent's measurement and the relief plan all read the inventory)
$OC undercloud set "$OTHER" --cpus 8 >/dev/null
$OC undercloud set "$BEFORE" --cpus "$(nproc)" >/dev/null
$OC services down agent >/dev/null && $OC services up agent >/dev/null
.venv/bin/python - "$WEB" "$BEFORE" <<'PY'
import subprocess, sys
from orchestrator.hosts import drivers
from overcloud.settings import load_settings
node, host = sys.argv[1], sys.argv[2]
d = drivers(load_settings())[host]
d.exec_stream(node, "sh", "-c", "while :; do :; done", stdout=subprocess.DEVNULL)
print(f"loading {node} on {host}: one core busy")
PY
echo "(watch it live in another terminal: $OC top --overcloud $NAME)"
for i in $(seq 1 120); do
  NOW=$($OC list --json | .venv/bin/python -c 'import json,sys; o=next(o for o in json.load(sys.stdin) if o["name"] == sys.argv[1]); print(o["nodes"][sys.argv[2]], o["state"])' "$NAME" "$WEB")
  CODE=$(curl -s -o /dev/null -w '%{http_code}' "${URL}wp-admin/install.php" || true)
  printf '%3ss  %s on %-6s  site %s\n' "$((i * 2))" "$WEB" "$NOW" "$CODE"
  case "$NOW" in "$BEFORE "*) ;; *" ready") break ;; esac
  sleep 2
done
$OC show "$NAME" | sed -n '1,8p'
$OC top --overcloud "$NAME" --once || true
echo
echo "== change it: one more app replica, live, the site probed every 100 ms meanwhile"
SCALED=$(mktemp --suffix=.yaml)
.venv/bin/python - "$REQUEST" "$SCALED" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
tiers = doc["saas"].setdefault("tiers", {})
app = tiers.setdefault("app", {}).get("replicas", 1) + 1
tiers["app"]["replicas"] = app
doc["cluster"]["nodes"] = 1 + max(app, tiers.get("web", {}).get("replicas", 1))
yaml.safe_dump(doc, open(sys.argv[2], "w"), sort_keys=False)
PY
$DEV request apply "$SCALED" --dry-run
.venv/bin/python - "$URL" $DEV request apply "$SCALED" --wait <<'PY'
import subprocess, sys
from orchestrator.downtime import DowntimeProbe
with DowntimeProbe(sys.argv[1] + "wp-admin/install.php") as probe:
    rc = subprocess.run(sys.argv[2:]).returncode
print(f"the site during the scale-up: {probe.ok} requests answered, {probe.failures} failed")
sys.exit(rc)
PY
rm -f "$SCALED"
$OC show "$NAME" | sed -n '1,10p'
echo
echo "WordPress of OverCloud '$NAME': $URL"
echo "Look closer:  $OC show $NAME   |   $OC top --overcloud $NAME   |   $OC services status"
echo "As $OWNER:    export OVERCLOUD_TOWER=$TOWER OVERCLOUD_TOKEN=$TOKEN   (then: $OC list, show, top --overcloud $NAME)"
echo "Web page:     $TOWER/   (sign in as $OWNER with the token: $TOKEN)"
echo "Dashboards:   ./grafana (Grafana provisioning)   |   alert rules: $OC alerts list"
echo "Stop it all:  scripts/demo.sh stop"
