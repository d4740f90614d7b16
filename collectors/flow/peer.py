"""Who talks to whom (measurement `flow_peer`): a node's traffic per peer node, from conntrack.

Source: the node's conntrack table, read from the UnderCloud host as
`/proc/<init pid>/net/nf_conntrack` (the node's network namespace; nothing runs inside the
node). Byte and packet counters need conntrack accounting, which is off by default in every
new namespace: the collector switches it on (`nsenter -n … sysctl net.netfilter.
nf_conntrack_acct=1`) once per init pid; connections opened before that carry no counters and
are left out.

What counts: connections with one end inside the node (its addresses, loopback, Docker's
bridges) and the other outside, i.e. what crosses the node's `eth0`. Traffic between the
stack's containers on one node (nginx → WordPress) never leaves the node and is not peer
traffic (it shows on the Docker bridge in `flow_iface`). The far end is named by its address:
a node of the same OverCloud (from the LXD API; after undoing the host's masquerading) or
`external`.

Counters are kept per connection between readings, so `bytes_sent`/`bytes_received` are
monotonic totals since the agent started (like interface counters), even though connections
leave the table; rates are their per-second differences.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from collectors.base import register
from collectors.flow.conntrack import Conn, parse, unnat, unnat_index
from collectors.node import LocalNets, NodeState, Peer, PeerDirectory
from overcloud.samples import FieldValue, Layer, Sample, now_ns

log = logging.getLogger(__name__)

EXTERNAL = "external"
SKIP_PROTOS = ("unknown", "icmp", "icmpv6", "igmp")


@dataclass(frozen=True, slots=True)
class Flow:
    """One connection as this node sees it: the far end's address and the node's direction."""

    remote: str
    conn: Conn
    outgoing: bool

    @property
    def sent(self) -> tuple[int, int]:
        t = self.conn.orig if self.outgoing else self.conn.reply
        return (t.bytes or 0, t.packets or 0)

    @property
    def received(self) -> tuple[int, int]:
        t = self.conn.reply if self.outgoing else self.conn.orig
        return (t.bytes or 0, t.packets or 0)


def _multicast(address: str) -> bool:
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    return ip.is_multicast


def flows(conns: list[Conn], local: LocalNets) -> list[Flow]:
    """The accounted connections that cross the node's boundary, with the far address."""
    out = []
    for c in conns:
        if c.proto in SKIP_PROTOS or not c.accounted:
            continue
        src_in, dst_in = local.contains(c.orig.src), local.contains(c.orig.dst)
        if src_in and dst_in:
            continue  # inside the node (containers, loopback, the proxy device)
        if src_in:
            remote, outgoing = c.reply.src, True  # reply src: the real responder after DNAT
        else:
            remote, outgoing = c.orig.src, False
        if _multicast(remote):
            continue
        out.append(Flow(remote, c, outgoing))
    return out


def resolve_nat(fl: list[Flow], known: set[str], host_conns: list[Conn]) -> list[Flow]:
    """Incoming flows from an unknown address: replace it by the host's original source."""
    index = unnat_index(host_conns)
    out = []
    for f in fl:
        if not f.outgoing and f.remote not in known:
            real = unnat(f.conn, index)
            if real is not None:
                f = Flow(real, f.conn, f.outgoing)
        out.append(f)
    return out


@dataclass
class _Totals:
    bytes_sent: int = 0
    bytes_received: int = 0
    packets_sent: int = 0
    packets_received: int = 0


@dataclass
class PeerAccounting:
    """Per-peer running totals from successive conntrack readings (pure: no I/O)."""

    tier: str = ""
    tiers: Mapping[str, str] = field(default_factory=dict)
    _seen: dict[tuple[str, str, str, int, int], tuple[int, int, int, int]] = field(
        default_factory=dict)
    _totals: dict[str, _Totals] = field(default_factory=dict)
    _prev: dict[str, tuple[int, int]] = field(default_factory=dict)
    _prev_ns: int | None = None

    def update(self, time_ns: int, named: list[tuple[str, Flow]]) -> list[Sample]:
        seen: dict[tuple[str, str, str, int, int], tuple[int, int, int, int]] = {}
        conns: dict[str, int] = {}
        for peer, f in named:
            (bs, ps), (br, pr) = f.sent, f.received
            now = (bs, br, ps, pr)
            before = self._seen.get(f.conn.key, (0, 0, 0, 0))
            if any(n < b for n, b in zip(now, before, strict=True)):
                before = (0, 0, 0, 0)  # the same 5-tuple reused by a new connection
            t = self._totals.setdefault(peer, _Totals())
            t.bytes_sent += bs - before[0]
            t.bytes_received += br - before[1]
            t.packets_sent += ps - before[2]
            t.packets_received += pr - before[3]
            seen[f.conn.key] = now
            conns[peer] = conns.get(peer, 0) + 1
        self._seen = seen
        seconds = (time_ns - self._prev_ns) / 1e9 if self._prev_ns is not None else 0.0
        out = []
        for peer, t in sorted(self._totals.items()):
            fields: dict[str, FieldValue] = {
                "bytes_sent": t.bytes_sent, "bytes_received": t.bytes_received,
                "packets_sent": t.packets_sent, "packets_received": t.packets_received,
                "connections": conns.get(peer, 0),
            }
            prev = self._prev.get(peer)
            if prev is not None and seconds > 0:
                fields["bytes_sent_per_s"] = round((t.bytes_sent - prev[0]) / seconds, 3)
                fields["bytes_received_per_s"] = round((t.bytes_received - prev[1]) / seconds, 3)
            tags = {"peer": peer, "peer_tier": self.tiers.get(peer, EXTERNAL if peer == EXTERNAL
                                                               else "unknown")}
            if self.tier:
                tags["tier"] = self.tier
            out.append(Sample("flow_peer", tags, fields, time_ns))
            self._prev[peer] = (t.bytes_sent, t.bytes_received)
        self._prev_ns = time_ns
        return out


# --- the live source ---------------------------------------------------------------------------


def enable_accounting(pid: int) -> bool:
    """conntrack accounting on in the network namespace of `pid` (idempotent)."""
    proc = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"],
        capture_output=True, text=True, timeout=10, check=False,
    )
    if proc.returncode != 0:
        log.warning("cannot enable conntrack accounting for pid %d: %s", pid, proc.stderr.strip())
    return proc.returncode == 0


def read_table(path: Path) -> list[Conn]:
    try:
        return parse(path.read_text())
    except OSError:
        return []


@register("flow_peer")
class PeerCollector:
    """Traffic of one node per peer node (tags `peer`, `peer_tier`, `tier`)."""

    name = "flow_peer"
    layer = Layer.FLOW

    def __init__(
        self,
        node: NodeState,
        peers: PeerDirectory,
        tiers: Mapping[str, str],
        node_name: str,
        proc: Path = Path("/proc"),
        enable: Callable[[int], bool] = enable_accounting,
    ) -> None:
        self._node = node
        self._peers = peers
        self._proc = proc
        self._enable = enable
        self._enabled_pid: int | None = None
        self._acct = PeerAccounting(tier=tiers.get(node_name, ""), tiers=dict(tiers))

    def collect(self) -> list[Sample]:
        reading = self._node.read()
        pid = reading.pid
        if pid is None or reading.state is None:
            return []
        if pid != self._enabled_pid:  # once per init pid; a failure is logged once
            self._enable(pid)
            self._enabled_pid = pid
        local = LocalNets.of(reading.state)
        fl = flows(read_table(self._proc / str(pid) / "net" / "nf_conntrack"), local)
        addresses = {f.remote for f in fl}
        names = self._peers.resolve(addresses)
        if any(not f.outgoing and f.remote not in names for f in fl):
            fl = resolve_nat(fl, set(names), read_table(self._proc / "self" / "net" /
                                                         "nf_conntrack"))
            names = self._peers.resolve({f.remote for f in fl})
        named = [(_name(names.get(f.remote)), f) for f in fl]
        return self._acct.update(now_ns(), named)


def _name(peer: Peer | None) -> str:
    return peer.node if peer is not None else EXTERNAL
