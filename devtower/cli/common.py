"""Shared CLI state: the settings tree (loaded once), consoles, and output helpers.

Both consoles print text as it is: rich markup (`[bold]`, `[/x]`) and emoji codes (`:x:`)
are off, because what the CLI prints is mostly the user's own text — names, owners, file
paths, tag values, error messages that quote them — and `[/x]` in it would crash rich and
`[bold]` would restyle it. Styled output is built as `rich.text.Text` (`styled`), never as
markup in an f-string.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from overcloud.errors import UserError
from overcloud.settings import Settings, load_settings

if TYPE_CHECKING:
    from devtower.client import TowerClient

console = Console(markup=False, emoji=False)
if not console.is_terminal:
    # piped or captured: do not squeeze tables into 80 columns
    console = Console(width=200, markup=False, emoji=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False)


def styled(text: str, style: str) -> Text:
    """`text`, exactly as given, in `style` (e.g. "green", "bold red")."""
    return Text(text, style=style)

_config: dict[str, Path | None] = {"path": None}
_settings: dict[str, Settings] = {}
_tower: dict[str, str] = {}
_client: dict[str, TowerClient] = {}


def set_tower(url: str, token: str) -> None:
    """`--tower URL --token T` (or OVERCLOUD_TOWER / OVERCLOUD_TOKEN): run through the API."""
    _tower.clear()
    _client.clear()
    if url:
        _tower.update(url=url, token=token)


def tower() -> TowerClient | None:
    """The DevTower client when the CLI runs remotely, else None (built once)."""
    if not _tower:
        return None
    if "c" not in _client:
        from devtower.client import TowerClient

        _client["c"] = TowerClient(_tower["url"], _tower["token"])
    return _client["c"]


def local_only(what: str) -> None:
    """Refuse a command that needs the UnderCloud machine when running through `--tower`."""
    if _tower:
        raise UserError(f"{what} runs on the UnderCloud machine only, not through --tower")


def set_config(path: Path | None) -> None:
    _config["path"] = path
    _settings.clear()


def settings() -> Settings:
    if "s" not in _settings:
        _settings["s"] = load_settings(_config["path"])
    return _settings["s"]


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("kafka", "apscheduler", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    # kafka-python logs every failed reconnect at ERROR; our own code reports outages once
    logging.getLogger("kafka").setLevel(logging.CRITICAL if not verbose else logging.INFO)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` so long-running commands finish their batch and exit."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
