"""Separate OverCloud networks on this machine: a forward filter kept in step with the bridges.

Every OverCloud has its own bridge on each host it uses (`Settings.overcloud_network`), with
no NAT. The bridges of our local LXD daemons share this machine's kernel, and that kernel
routes between them (LXD turns `ip_forward` on): without a filter a node of one OverCloud
reaches every node of every other one, and its packets leave through the uplink with a
private source address. The filter lets an OverCloud bridge forward only to the bridges of
the same OverCloud (its nodes on the other hosts of this machine) and, through the uplink, to
that OverCloud's subnets on other machines; everything else forwarded into or out of an
OverCloud bridge is dropped (another OverCloud, the outside world). The host itself still
reaches every node (that is not forwarding), which the edge, agents and probes use.

Decide, then act: `render` is a pure function of {bridge: (OverCloud, subnet)}; `Isolation.sync`
reads the bridges from every LXD daemon (their `user.overcloud` label, not our records; remote
ones too: on one machine they may share our kernel, elsewhere they give the subnets), renders and
replaces our nft table in one transaction, so it is idempotent and right after a crash. A
daemon that does not answer keeps the bridges it had at the last sync (kept in a small state
file), so one host being down neither opens nor cuts the others' traffic.

A remote host's own kernel is that host's business; this module filters only this machine's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from overcloud.errors import TemporaryError

PRIORITY = -10
"""Before the usual filter priority (0): a drop here is final whatever LXD's table accepts."""


def table_name(bridge_prefix: str) -> str:
    """One table per bridge prefix, so two setups on one machine (tests) never fight."""
    return "overcloud_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge_prefix)


Network = tuple[str, str]
"""(OverCloud, subnet CIDR) of one OverCloud bridge."""


def _set(name: str, kind: str, elements: list[str], interval: bool) -> list[str]:
    lines = [f"  set {name} {{", f"    type {kind}"]
    if interval:
        lines.append("    flags interval")
    if elements:
        lines.append("    elements = { " + ", ".join(sorted(elements)) + " }")
    return [*lines, "  }"]


def render(bridge_prefix: str, bridges: Mapping[str, Network]) -> str:
    """The nft script that makes our table exactly this (removes it when there is nothing).

    `bridges` maps every OverCloud bridge of every host to (OverCloud, subnet). A bridge of
    another machine never matches an interface here, but its subnet says which forwarded
    packets are the OverCloud's own traffic between machines (routed by the operator).

    Who may talk to whom is three sets, so a packet costs three lookups whatever the number
    of OverClouds (not a walk through rules per OverCloud), and a sync is one small script."""
    table = table_name(bridge_prefix)
    lines = [f"table inet {table}", f"delete table inet {table}"]  # create-then-delete: no error
    if not bridges:
        return "\n".join(lines) + "\n"
    names: dict[str, set[str]] = {}
    subnets: dict[str, set[str]] = {}
    for bridge, (owner, cidr) in bridges.items():
        names.setdefault(owner, set()).add(bridge)
        if cidr:
            subnets.setdefault(owner, set()).add(cidr)
    same, out_ok, in_ok = [], [], []
    for owner, mine in names.items():
        same += [f'"{a}" . "{b}"' for a in mine for b in mine]
        for cidr in subnets.get(owner, ()):
            out_ok += [f'"{b}" . {cidr}' for b in mine]
            in_ok += [f'{cidr} . "{b}"' for b in mine]
    ours = f'"{bridge_prefix}x*"'  # every OverCloud bridge (`Settings.overcloud_network`)
    lines += [
        f"table inet {table} {{",
        # bridge pairs of one OverCloud on this machine
        *_set("same", "ifname . ifname", same, interval=False),
        # an OverCloud's bridge here → its subnets on other machines, and back
        *_set("out_ok", "ifname . ipv4_addr", out_ok, interval=True),
        *_set("in_ok", "ipv4_addr . ifname", in_ok, interval=True),
        "  chain forward {",
        f"    type filter hook forward priority {PRIORITY}; policy accept;",
        "    iifname . oifname @same accept",
        f"    oifname != {ours} iifname . ip daddr @out_ok accept",
        f"    iifname != {ours} ip saddr . oifname @in_ok accept",
        f"    iifname {ours} drop",
        f"    oifname {ours} drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def apply(script: str) -> None:
    """Run the script as one nft transaction: all of it or nothing."""
    try:
        subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True,
                       check=True, timeout=30)
    except FileNotFoundError:
        raise TemporaryError("nft is not installed: `overcloud services up lxd` installs "
                             "nftables (OverCloud networks are kept apart with it)") from None
    except subprocess.CalledProcessError as exc:
        raise TemporaryError(f"nft refused the OverCloud network filter: "
                             f"{exc.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise TemporaryError("nft did not answer within 30 s") from None


class Isolation:
    """Keeps this machine's filter in step with the OverCloud bridges of the local daemons.

    `sources` maps each host to a function returning its {bridge: (OverCloud, subnet)}; it
    may raise `TemporaryError` when that daemon does not answer."""

    def __init__(self, bridge_prefix: str, state_dir: Path,
                 sources: Mapping[str, Callable[[], dict[str, Network]]],
                 runner: Callable[[str], None] = apply) -> None:
        self._prefix = bridge_prefix
        self._state = state_dir / f"{table_name(bridge_prefix)}.json"
        self._sources = dict(sources)
        self._run = runner

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # read-render-apply must not interleave: a stale view applied last would cut a bridge
        self._state.parent.mkdir(parents=True, exist_ok=True)
        with self._state.with_suffix(".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def sync(self) -> dict[str, Network]:
        """Read, render, apply; returns the {bridge: (OverCloud, subnet)} now in force."""
        with self._locked():
            known: dict[str, dict[str, Network]]
            try:
                stored = json.loads(self._state.read_text())
                known = {h: {b: (str(n[0]), str(n[1])) for b, n in per.items()}
                         for h, per in stored.items()}
            except (OSError, ValueError, TypeError, AttributeError, IndexError, KeyError):
                known = {}  # missing or from an older format: read everything afresh
            for host, read in self._sources.items():
                with contextlib.suppress(TemporaryError):  # keeps what it had (docstring)
                    known[host] = read()
            known = {h: v for h, v in known.items() if h in self._sources}
            bridges = {b: oc for per_host in known.values() for b, oc in per_host.items()}
            self._run(render(self._prefix, bridges))
            tmp = self._state.with_suffix(".tmp")
            tmp.write_text(json.dumps(known, sort_keys=True))
            tmp.replace(self._state)
            return bridges
