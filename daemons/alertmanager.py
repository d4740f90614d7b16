"""Prometheus Alertmanager (Debian `prometheus-alertmanager`) as one of our services.

Why a real Alertmanager next to our own webhook: operators already route, group, silence and
inhibit alerts there; our evaluator only has to POST them to its v2 API. It listens on
loopback only, keeps its data under our state directory, and its gossip port is disabled
(`--cluster.listen-address=` empty), so a single instance never looks for peers. Its one
receiver posts to `alerts.webhook_url` (when set), grouped by alert name and host.
"""

from __future__ import annotations

import contextlib
import shutil

import httpx
import yaml

from daemons.process import Daemon
from overcloud.settings import Settings


def config(s: Settings) -> str:
    receiver: dict[str, object] = {"name": "operators"}
    if s.alerts.webhook_url:
        receiver["webhook_configs"] = [{"url": s.alerts.webhook_url, "send_resolved": True}]
    doc = {
        "route": {
            "receiver": "operators",
            "group_by": ["alertname", "host", "overcloud"],
            "group_wait": "1s",
            "group_interval": "10s",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/-/ready", timeout=0.5).status_code == 200
    return False


def alertmanager_daemon(s: Settings) -> Daemon:
    base = s.state_dir / "alertmanager"
    conf = base / "alertmanager.yml"
    port = s.alerts.alertmanager_port
    url = f"http://127.0.0.1:{port}"

    def write_config() -> None:
        (base / "data").mkdir(parents=True, exist_ok=True)
        conf.write_text(config(s))

    return Daemon(
        name="alertmanager",
        argv=[
            shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager",
            f"--config.file={conf}",
            f"--storage.path={base / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        state_dir=s.state_dir,
        ready=lambda: _ready(url),
        address=url,
        port=("127.0.0.1", port),
        start_timeout=30,
        prepare=write_config,
    )
