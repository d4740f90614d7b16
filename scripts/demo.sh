#!/usr/bin/env bash
# The main job on one machine: broker, InfluxDB, DevLake, two LXD UnderCloud hosts and the
# orchestrator; then an OverCloud request (examples/my-overcloud.yaml: 2 nodes, WordPress on
# nginx + MariaDB) applied and followed until ready, its URL, and the latest samples read
# back from its DevLake. `scripts/demo.sh stop` deletes the OverCloud and stops everything
# it started (by recorded pid).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
OC=.venv/bin/overcloud
REQUEST=${REQUEST:-examples/my-overcloud.yaml}
NAME=$(sed -n 's/^name: *\([a-z0-9-]*\).*/\1/p' "$REQUEST")
export OVERCLOUD_AGENT_INTERVAL=${OVERCLOUD_AGENT_INTERVAL:-2}
if [ "${1:-}" = "stop" ]; then
  $OC delete "$NAME" --wait 2>/dev/null || true
  exec $OC services down
fi
echo "== services (installs what is missing; first run builds the node image, minutes)"
$OC services up kafka influxdb devlake lxd orchestrator agent
echo "== OverCloud request: $REQUEST"
$OC request validate "$REQUEST"
if ! $OC show "$NAME" >/dev/null 2>&1; then
  $OC request apply "$REQUEST" --wait
fi
$OC list
echo "== what the developer sees"
URL=$($OC list --json | .venv/bin/python -c 'import json,sys; print(next(o["url"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$NAME")
curl -fsS -o /dev/null -w "GET ${URL}wp-admin/install.php → %{http_code} (%{time_total}s)\n" -L "${URL}wp-admin/install.php"
echo "== its DevLake (resource samples of every node, through Kafka into InfluxDB)"
for _ in $(seq 1 60); do
  $OC metrics latest --overcloud "$NAME" --measurement resource_instance >/dev/null 2>&1 && break
  sleep 0.5
done
$OC metrics latest --overcloud "$NAME"
echo
echo "WordPress of OverCloud '$NAME': $URL"
echo "Look closer:  $OC show $NAME    |   $OC services status"
echo "Stop it all:  scripts/demo.sh stop"
