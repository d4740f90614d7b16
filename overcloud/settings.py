"""One settings tree, read once at start-up from a TOML file and the environment.

Precedence: built-in defaults < TOML file (`--config FILE`, `$OVERCLOUD_CONFIG`, or
`./overcloud.toml` when present) < environment variables `OVERCLOUD_<SECTION>_<FIELD>`
(e.g. `OVERCLOUD_KAFKA_PORT=29092`). Every value is validated where the tree is built, so a
bad setting fails at start with a one-line message naming it, never deep inside a run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from overcloud.errors import ConfigError
from overcloud.problems import echo


def _default_state_dir() -> Path:
    """/var/lib/overcloud for root, else $XDG_STATE_HOME/overcloud.

    Not under /root: LXD's unprivileged containers must traverse the path to their rootfs,
    and /root is mode 0700.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/overcloud")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "overcloud"


@dataclass(frozen=True)
class KafkaSettings:
    host: str = "127.0.0.1"
    """Address the broker listens on and clients connect to (loopback by default)."""
    port: int = 9092
    """Broker port."""
    partitions: int = 4
    """Partitions for the metric topics (keyed by node); DevLake consumers share them."""
    topic_prefix: str = "overcloud"
    """Topics are `<prefix>.metrics.<layer>`, `<prefix>.events`, `<prefix>.deadletter`."""
    replay_window: float = 900.0
    """Seconds a producer keeps what the broker acknowledged (agents' batches in their spool,
    published events in the journal), to send again if the broker loses its log (tansu keeps
    it in memory). Covers a DevLake that is down or lagging for up to this long."""
    replay_max_bytes: int = 64 * 1024 * 1024
    """Upper bound of that history per spool or journal; older entries go first (counted)."""

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class InfluxSettings:
    dialect: str = "v1"
    """`v1`: InfluxDB 1.x HTTP API (/write, /query). `v2`: the /api/v2/write API via influxdb-client."""
    host: str = "127.0.0.1"
    """Where our local InfluxDB listens (and where clients connect when `url` is empty)."""
    port: int = 8086
    """HTTP port of the local InfluxDB; its RPC port is this + 2."""
    url: str = ""
    """Full base URL of a remote InfluxDB; empty means http://host:port."""
    token: str = ""
    """API token for the v2 dialect (InfluxDB 2.x/3.x)."""
    org: str = "overcloud"
    """Organisation for the v2 dialect."""
    database_prefix: str = "devlake_"
    """Each OverCloud's DevLake is the database `<prefix><overcloud>`."""
    default_database: str = "devlake_undercloud"
    """Where samples without an `overcloud` tag go (UnderCloud-level data)."""
    retention: str = "30d"
    """Retention of every DevLake database (InfluxQL duration)."""
    create_databases: bool = True
    """Create databases on first sight; turn off for servers without that API (VictoriaMetrics)."""
    credentials: str = ""
    """The InfluxDB accounts file (JSON, see overcloud.influxauth); empty means
    `<state_dir>/secrets/influxdb.json`, written by `services up influxdb`. No file: no auth."""

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/") or f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class AgentSettings:
    interval: float = 10.0
    """Seconds between collections (1 s at least)."""
    spool_max_bytes: int = 64 * 1024 * 1024
    """Upper bound of the on-disk spool used while the broker is unreachable."""
    send_timeout: float = 5.0
    """Seconds to wait for the broker to acknowledge a batch before spooling it."""
    overcloud: str = ""
    """OverCloud the managed host agent (`services up agent`) reports for; empty: the UnderCloud."""
    node: str = ""
    """Node name of the managed host agent; empty: this machine's host name."""


@dataclass(frozen=True)
class DevLakeSettings:
    group: str = "overcloud-devlake"
    """Kafka consumer group; run several `devlake run` to share the partitions."""
    batch_points: int = 20000
    """Flush to InfluxDB when this many points are pending..."""
    linger: float = 0.2
    """...or when the oldest pending point has waited this many seconds."""
    max_backoff: float = 10.0
    """Longest pause between write retries while InfluxDB is down."""


@dataclass(frozen=True)
class AlertsSettings:
    """The alert-rule evaluator (`overcloud alerts run`) and where it notifies."""

    rules: str = ""
    """YAML rule file added to (and overriding) the built-in rules; empty: built-ins only."""
    group: str = "overcloud-alerts"
    """Kafka consumer group of the evaluator (its own: it reads every sample DevLake reads)."""
    tick: float = 1.0
    """Seconds between clock ticks (pending → firing without a new sample, no-data checks)."""
    webhook_url: str = ""
    """Default URL of `webhook` actions that name none; empty: such actions are skipped."""
    alertmanager_port: int = 9093
    """Port of the Alertmanager we start on 127.0.0.1 (its cluster port is disabled)."""
    alertmanager_url: str = ""
    """An Alertmanager elsewhere; empty: http://127.0.0.1:<alertmanager_port>."""
    resend: float = 30.0
    """Seconds between re-sends of firing alerts to Alertmanager (it expires silent ones)."""

    @property
    def alertmanager_base(self) -> str:
        return self.alertmanager_url.rstrip("/") or f"http://127.0.0.1:{self.alertmanager_port}"


@dataclass(frozen=True)
class DevTowerSettings:
    host: str = "127.0.0.1"
    """Where the DevTower API (and page) listens; loopback unless you put TLS in front."""
    port: int = 8480
    """Its TCP port."""
    tls_cert: str = ""
    """PEM certificate: when set (with `tls_key`) the DevTower speaks HTTPS only."""
    tls_key: str = ""
    """PEM private key of `tls_cert`."""
    public_url: str = ""
    """The address developers use (printed by `services up`); empty: derived from host/port."""
    grafana_url: str = ""
    """Grafana's address (e.g. http://127.0.0.1:3000): the page links each OverCloud to its
    dashboard there; empty: no links."""
    group: str = "overcloud-devtower"
    """Consumer group of the DevTower's event feed (journal and webhooks)."""
    workers: int = 2
    """HTTP worker processes sharing the listening socket (one per core: Python serves one
    request at a time per process); the feeds and the webhook dispatcher run once, beside
    them. 1: everything in one process."""

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class UnderCloudSettings:
    """The local UnderCloud: LXD daemons on this machine, each one an UnderCloud host."""

    hosts: str = "lxd1,lxd2"
    """Comma-separated names of the local LXD daemons (host i counts from 1 in this order)."""
    bridge_prefix: str = "ocbr"
    """Host i gets the bridge `<prefix><i>` (interface names have 15 characters at most)."""
    subnet_prefix: str = "10.231"
    """Host i gets the bridge subnet `<prefix>.<i>.1/24`: always explicit, never auto-detected."""
    https_port: int = 18443
    """Host i serves its API (remote access, migration) on 127.0.0.1:<port + i - 1>."""
    storage_driver: str = "btrfs"
    """LXD pool driver: `btrfs` (a loop file; launches are snapshots of the unpacked image,
    ~2 s) or `dir` (every launch unpacks the whole image, ~20 s for the node image)."""
    storage_size: str = "40GiB"
    """Size of each host's btrfs loop file (sparse: it takes only what is written)."""
    image_cache: str = ""
    """Built images, kept across state directories; empty: $XDG_CACHE_HOME/overcloud."""
    mirror: str = "http://deb.debian.org/debian"
    """Debian mirror for debootstrap."""
    suite: str = "bookworm"
    """Debian release of every image we build."""
    host_cpus: float = 0
    """CPU capacity of each UnderCloud host for `resource_undercloud` (0: this machine's cores)."""
    host_memory: int = 0
    """Memory capacity of each UnderCloud host in bytes (0: this machine's memory)."""
    migration_cooldown: float = 120.0
    """Seconds after relieving an overloaded host before it may be relieved again (no flapping)."""
    relief_below: float = 70.0
    """Relief aims under this CPU percent when the overload event names no recovery threshold."""
    remotes: str = ""
    """Remote UnderCloud hosts reached over HTTPS: `name=https://address:port`, comma-separated.
    They must trust our client certificate (`<state>/lxd/client/client.crt`, or `client_cert`)
    and their server certificate is pinned from `<remote_certs>/<name>.crt`."""
    remote_certs: str = ""
    """Directory with the pinned server certificate `<name>.crt` of every remote host;
    empty: `<state_dir>/lxd/remotes`."""
    client_cert: str = ""
    """Client certificate (PEM) presented to every LXD host; empty: one generated on first use."""
    client_key: str = ""
    """Key of `client_cert`."""

    @property
    def remote_urls(self) -> dict[str, str]:
        out = {}
        for item in (r.strip() for r in self.remotes.split(",")):
            if item:
                name, _, url = item.partition("=")
                out[name.strip()] = url.strip()
        return out

    @property
    def host_names(self) -> list[str]:
        return [h.strip() for h in self.hosts.split(",") if h.strip()]

    @property
    def cache_dir(self) -> Path:
        if self.image_cache:
            return Path(self.image_cache).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "overcloud"


@dataclass(frozen=True)
class LxdHost:
    """One UnderCloud host (an LXD daemon) as the rest of the code sees it (from the settings).

    Local hosts are daemons we start, reached on their unix socket; remote hosts (`url` set)
    are someone else's daemons, reached over HTTPS with our client certificate and their
    pinned server certificate.
    """

    name: str
    index: int
    lxd_dir: Path
    bridge: str
    address: str
    """Bridge address with prefix length, e.g. 10.231.1.1/24."""
    https_port: int
    url: str = ""
    """https://address:port of a remote host; empty for a local one."""
    tls: tuple[Path, Path, Path] | None = None
    """(client certificate, client key, pinned server certificate) of a remote host."""

    @property
    def remote(self) -> bool:
        return bool(self.url)

    @property
    def socket(self) -> Path:
        return self.lxd_dir / "unix.socket"

    @property
    def https_url(self) -> str:
        return self.url or f"https://127.0.0.1:{self.https_port}"


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=_default_state_dir)
    """Pid files, logs, data and spools of everything `overcloud` starts."""
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    influx: InfluxSettings = field(default_factory=InfluxSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    devlake: DevLakeSettings = field(default_factory=DevLakeSettings)
    undercloud: UnderCloudSettings = field(default_factory=UnderCloudSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    devtower: DevTowerSettings = field(default_factory=DevTowerSettings)

    @property
    def local_lxd_hosts(self) -> list[LxdHost]:
        """The local LXD daemons we run, each with its LXD_DIR under `<state_dir>/lxd/<name>`."""
        u = self.undercloud
        return [
            LxdHost(
                name=name,
                index=i,
                lxd_dir=self.state_dir / "lxd" / name,
                bridge=f"{u.bridge_prefix}{i}",
                address=f"{u.subnet_prefix}.{i}.1/24",
                https_port=u.https_port + i - 1,
            )
            for i, name in enumerate(u.host_names, start=1)
        ]

    @property
    def lxd_hosts(self) -> list[LxdHost]:
        """Every UnderCloud host: the local daemons, then the remote ones."""
        u = self.undercloud
        local = self.local_lxd_hosts
        client = self.state_dir / "lxd" / "client"
        crt = Path(u.client_cert) if u.client_cert else client / "client.crt"
        key = Path(u.client_key) if u.client_key else client / "client.key"
        pins = Path(u.remote_certs) if u.remote_certs else self.state_dir / "lxd" / "remotes"
        remote = [
            LxdHost(name=name, index=i, lxd_dir=self.state_dir / "lxd" / name, bridge="",
                    address="", https_port=0, url=url, tls=(crt, key, pins / f"{name}.crt"))
            for i, (name, url) in enumerate(u.remote_urls.items(), start=len(local) + 1)
        ]
        return local + remote

    def overcloud_network(self, slot: int) -> tuple[str, str]:
        """Bridge name and gateway address/prefix of OverCloud network `slot` (0-1023).

        Every OverCloud gets its own bridge on every host it uses, each a /27 carved from
        `<subnet_prefix>.128.0/17` (the host bridges use `<subnet_prefix>.1-127.0/24`). Slots
        are unique per machine, so two hosts on one machine never clash on a bridge name.
        """
        if not 0 <= slot < NETWORK_SLOTS:
            raise ValueError(f"network slot {slot} out of range")
        u = self.undercloud
        gateway = f"{u.subnet_prefix}.{128 + slot // 8}.{(slot % 8) * 32 + 1}/27"
        return f"{u.bridge_prefix}x{slot}", gateway

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}.{name}"


NETWORK_SLOTS = 1024
"""How many OverCloud networks (one per OverCloud per host) one machine can hold."""

_SECTIONS = {"kafka": KafkaSettings, "influx": InfluxSettings, "agent": AgentSettings,
             "devlake": DevLakeSettings, "undercloud": UnderCloudSettings,
             "alerts": AlertsSettings, "devtower": DevTowerSettings}


def load_settings(config: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build and validate the settings tree; raises `ConfigError` with a one-line reason."""
    env = dict(os.environ if env is None else env)
    path = config or (Path(env["OVERCLOUD_CONFIG"]) if env.get("OVERCLOUD_CONFIG") else None)
    data: dict[str, Any] = {}
    if path is None and Path("overcloud.toml").is_file():
        path = Path("overcloud.toml")
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except ValueError as exc:  # tomllib's int() of a number of more than 4300 digits
            raise ConfigError(f"config file {path} holds a number too large to read: {str(exc)[:40]}…"
                              ) from None
    unknown = set(data) - set(_SECTIONS) - {"state_dir"}
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))} in {path}")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"[{name}] in {path} must be a table")
        sections[name] = _build(cls, name, raw, env)
    state = env.get("OVERCLOUD_STATE_DIR") or data.get("state_dir")
    state_dir = Path(state) if state else _default_state_dir()
    if not sections["influx"].credentials:
        sections["influx"] = dataclasses.replace(
            sections["influx"], credentials=str(state_dir / "secrets" / "influxdb.json"))
    settings = Settings(state_dir=state_dir, **sections)
    _validate(settings)
    return settings


def _build(cls: type[Any], section: str, raw: dict[str, Any], env: dict[str, str]) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(f'{section}.{u}' for u in sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in names:
        key = f"OVERCLOUD_{section.upper()}_{name.upper()}"
        value: Any = env[key] if key in env else raw.get(name, dataclasses.MISSING)
        if value is dataclasses.MISSING:
            continue
        values[name] = _coerce(value, hints[name], f"{section}.{name}")
    return cls(**values)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str) and not re.fullmatch(r"\s*[-+]?[0-9]{1,18}\s*", value):
                raise ValueError  # not "٣" or "1_000", nor 5000 digits int() cannot read
            if isinstance(value, int) and abs(value) >= 2**63:
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):  # `nan` and `inf` pass every `< 1` check
                raise ConfigError(f"{where} must be a finite number, got {echo(value)}")
            return number
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where} must be {typ.__name__}, got {echo(value)}") from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: settings that become names (topics, databases, consumer groups): one rule for all of them
_NAMES = (("kafka", "topic_prefix"), ("influx", "database_prefix"),
          ("influx", "default_database"), ("devlake", "group"), ("devtower", "group"))
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _validate_text(s: Settings) -> None:
    """No setting holds a control character (a trailing newline from `$(cat file)` would end
    up in a topic, a database name or a header), and the settings that become names are names."""
    for section in dataclasses.fields(s):
        value = getattr(s, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if isinstance(v, str) and _CONTROL.search(v):
                raise ConfigError(f"{section.name}.{f.name} contains a control character "
                                  f"(a newline?): {echo(v)}")
    for section_name, field_name in _NAMES:
        v = getattr(getattr(s, section_name), field_name)
        if not _NAME.fullmatch(v):
            raise ConfigError(f"{section_name}.{field_name} must be 1 to 64 of letters, digits, "
                              f"'.', '_' and '-', got {echo(v)}")


def _validate(s: Settings) -> None:
    _validate_text(s)
    for name, port in (("kafka.port", s.kafka.port), ("influx.port", s.influx.port),
                       ("devtower.port", s.devtower.port)):
        if not 1 <= port <= 65533:
            raise ConfigError(f"{name} must be a TCP port (1-65533), got {port}")
    if s.influx.dialect not in ("v1", "v2"):
        raise ConfigError(f"influx.dialect must be 'v1' or 'v2', got {s.influx.dialect!r}")
    if s.kafka.partitions < 1:
        raise ConfigError(f"kafka.partitions must be at least 1, got {s.kafka.partitions}")
    if s.agent.interval < 1:
        raise ConfigError(f"agent.interval must be at least 1 second, got {s.agent.interval:g}")
    if s.agent.spool_max_bytes < 4096:
        raise ConfigError("agent.spool_max_bytes must be at least 4096")
    if s.kafka.replay_window < 0 or s.kafka.replay_max_bytes < 0:
        raise ConfigError("kafka.replay_window and kafka.replay_max_bytes must be >= 0 (0: no replay)")
    if s.devlake.batch_points < 1 or s.devlake.linger <= 0:
        raise ConfigError("devlake.batch_points must be >= 1 and devlake.linger > 0")
    if s.influx.url and not s.influx.url.startswith(("http://", "https://")):
        raise ConfigError(f"influx.url must start with http:// or https://, got {s.influx.url!r}")
    _validate_undercloud(s.undercloud)
    if not 1 <= s.devtower.workers <= 64:
        raise ConfigError(f"devtower.workers must be 1 to 64, got {s.devtower.workers}")
    if bool(s.devtower.tls_cert) != bool(s.devtower.tls_key):
        raise ConfigError("devtower.tls_cert and devtower.tls_key go together: set both or neither")
    if s.alerts.tick <= 0 or s.alerts.resend <= 0:
        raise ConfigError("alerts.tick and alerts.resend must be > 0 seconds")
    if not 1 <= s.alerts.alertmanager_port <= 65534:
        raise ConfigError(f"alerts.alertmanager_port must be a TCP port, got {s.alerts.alertmanager_port}")


def _validate_undercloud(u: UnderCloudSettings) -> None:
    names = u.host_names
    if not names:
        raise ConfigError("undercloud.hosts must name at least one LXD host")
    if len(set(names)) != len(names):
        raise ConfigError(f"undercloud.hosts has duplicate names: {u.hosts!r}")
    bad = [n for n in names if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", n)]
    if bad:
        raise ConfigError(
            f"undercloud.hosts: {', '.join(bad)} must be lowercase letters, digits and '-'"
        )
    remotes = u.remote_urls
    for name, url in remotes.items():
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name) or not re.fullmatch(
            r"https://[A-Za-z0-9.\-\[\]:]+:\d+/?", url
        ):
            raise ConfigError(
                f"undercloud.remotes: {name}={url} must be name=https://address:port "
                "(lowercase name, explicit port)"
            )
        if name in names:
            raise ConfigError(f"undercloud.remotes: {name} is also a local host")
    if bool(u.client_cert) != bool(u.client_key):
        raise ConfigError("undercloud.client_cert and undercloud.client_key go together")
    if not 1 <= len(names) <= 127:
        raise ConfigError("undercloud.hosts: at most 127 local hosts")
    if len(u.bridge_prefix) > 10 or not re.fullmatch(
        r"[a-z][a-z0-9]*", u.bridge_prefix
    ):
        raise ConfigError(f"undercloud.bridge_prefix {u.bridge_prefix!r}: lowercase, short")
    parts = u.subnet_prefix.split(".")
    if len(parts) != 2 or not all(re.fullmatch(r"[0-9]{1,3}", p) and int(p) <= 255 for p in parts):
        raise ConfigError(
            f"undercloud.subnet_prefix must look like '10.231', got {u.subnet_prefix!r}"
        )
    if u.storage_driver not in ("btrfs", "dir"):
        raise ConfigError(
            f"undercloud.storage_driver must be btrfs or dir, got {u.storage_driver!r}"
        )
    if u.host_cpus < 0 or u.host_memory < 0:
        raise ConfigError("undercloud.host_cpus and undercloud.host_memory must be >= 0")
    if not 1 <= u.https_port <= 65535 - len(names):
        raise ConfigError(f"undercloud.https_port must be a TCP port, got {u.https_port}")
