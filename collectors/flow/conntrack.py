"""Conntrack tables as data: parse `/proc/<pid>/net/nf_conntrack` lines, undo the host's NAT.

Each line is one connection the kernel tracks in that network namespace: the original
direction's tuple (`src dst sport dport`, and with accounting on, `packets bytes`) then the
reply direction's. Connections stay in the table until they time out (TCP TIME_WAIT: 120 s),
so a collector polling every few seconds sees each one, with its final counters, at least
once.

Traffic between two nodes on *different* LXD bridges is masqueraded by the UnderCloud host
(`ipv4.nat`): the receiving node sees the host's bridge address as the source. The host's
own conntrack table holds the translation; `unnat` finds the original source there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tuple:
    src: str
    dst: str
    sport: int
    dport: int
    packets: int | None
    bytes: int | None


@dataclass(frozen=True, slots=True)
class Conn:
    proto: str
    orig: Tuple
    reply: Tuple

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        o = self.orig
        return (self.proto, o.src, o.dst, o.sport, o.dport)

    @property
    def accounted(self) -> bool:
        return self.orig.bytes is not None and self.reply.bytes is not None


def _tuple(kv: list[tuple[str, str]]) -> Tuple:
    d = dict(kv)
    return Tuple(
        d.get("src", ""), d.get("dst", ""), int(d.get("sport", 0)), int(d.get("dport", 0)),
        int(d["packets"]) if "packets" in d else None, int(d["bytes"]) if "bytes" in d else None,
    )


def parse_line(line: str) -> Conn | None:
    """One `nf_conntrack` line; None for lines we cannot read (never raises)."""
    parts = line.split()
    if len(parts) < 6:
        return None
    proto = parts[2]
    halves: list[list[tuple[str, str]]] = [[]]
    for token in parts[3:]:
        if "=" not in token:
            continue
        k, v = token.split("=", 1)
        if k in ("mark", "zone", "use", "secctx", "labels", "delta-time"):
            continue
        if k == "src" and any(key == "src" for key, _ in halves[-1]):
            halves.append([])
        halves[-1].append((k, v))
    if len(halves) != 2:
        return None
    try:
        return Conn(proto, _tuple(halves[0]), _tuple(halves[1]))
    except ValueError:
        return None


def parse(text: str) -> list[Conn]:
    return [c for line in text.splitlines() if (c := parse_line(line)) is not None]


def unnat_index(host_conns: Iterable[Conn]) -> dict[tuple[str, str, str, int, int], str]:
    """reply tuple (proto, src, dst, sport, dport) → original source, for SNATed connections."""
    out = {}
    for c in host_conns:
        if c.orig.src != c.reply.dst:  # source-translated on the way through this host
            r = c.reply
            out[(c.proto, r.src, r.dst, r.sport, r.dport)] = c.orig.src
    return out


def unnat(conn: Conn, index: dict[tuple[str, str, str, int, int], str]) -> str | None:
    """The real source of an incoming connection whose source the host translated, if any.

    The host's connection, seen from its reply side, is exactly the node's incoming one
    reversed: reply src = the node's address, reply dst = the translated source.
    """
    o = conn.orig
    return index.get((conn.proto, o.dst, o.src, o.dport, o.sport))
