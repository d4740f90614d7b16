#!/usr/bin/env bash
# The main job on one machine: broker + InfluxDB, a resource agent and the DevLake running,
# then the latest samples read back from the OverCloud's DevLake database.
# `scripts/demo.sh stop` stops everything it started (by recorded pid).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
OC=.venv/bin/overcloud
export OVERCLOUD_AGENT_OVERCLOUD=${OVERCLOUD_AGENT_OVERCLOUD:-demo}
export OVERCLOUD_AGENT_INTERVAL=${OVERCLOUD_AGENT_INTERVAL:-2}
if [ "${1:-}" = "stop" ]; then
  exec $OC services down
fi
echo "== services (installs what is missing, then starts and waits for each)"
$OC services up kafka influxdb devlake agent
echo "== waiting for the first samples in the DevLake of OverCloud '$OVERCLOUD_AGENT_OVERCLOUD'"
for _ in $(seq 1 60); do
  if $OC metrics latest --overcloud "$OVERCLOUD_AGENT_OVERCLOUD" --measurement resource_host >/dev/null 2>&1; then
    break
  fi
  sleep 0.5
done
$OC metrics latest --overcloud "$OVERCLOUD_AGENT_OVERCLOUD"
echo
echo "Running in the background: $($OC services status | grep -c running) services (see: $OC services status)."
echo "Query it:  $OC metrics query 'SELECT mean(cpu_percent) FROM resource_host WHERE time > now() - 5m GROUP BY time(30s)' --overcloud $OVERCLOUD_AGENT_OVERCLOUD"
echo "Stop it:   scripts/demo.sh stop"
