"""Flow collectors on recorded inputs: LXD state documents and conntrack tables of a 2-node
OverCloud (DB on one node, WordPress + nginx on the other, on two LXD hosts whose bridges
masquerade), recorded after three page loads."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from collectors.flow.conntrack import parse, parse_line
from collectors.flow.iface import iface_samples_between
from collectors.flow.peer import PeerAccounting, flows, resolve_nat
from collectors.node import LocalNets, Peer, PeerDirectory, StateReading, nic_addresses

CASES = Path(__file__).parent / "testcases" / "flow"
DB, WEB = "scr-n1", "scr-n2"
ADDRESSES = {"10.236.1.14": DB, "10.236.2.55": WEB}
TIERS = {DB: "db", WEB: "app+web"}


def _state(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CASES / f"lxd_state_{name}.json").read_text())
    return data


def _table(name: str) -> str:
    return (CASES / f"conntrack_{name}.txt").read_text()


def _peer_samples(node: str, table: str, state: str, host: str = "") -> list[Any]:
    fl = flows(parse(_table(table)), LocalNets.of(_state(state)))
    fl = resolve_nat(fl, set(ADDRESSES), parse(host))
    acct = PeerAccounting(tier=TIERS[node], tiers=TIERS)
    return acct.update(10**18, [(ADDRESSES.get(f.remote, "external"), f) for f in fl])


def test_both_ends_named_and_counters_agree() -> None:
    (db,) = _peer_samples(DB, "db_node", "db_node", _table("host"))
    (web,) = _peer_samples(WEB, "web_node", "web_node")
    assert db.tags == {"peer": WEB, "peer_tier": "app+web", "tier": "db"}
    assert web.tags == {"peer": DB, "peer_tier": "db", "tier": "app+web"}
    # eight MariaDB connections, WordPress → MariaDB; what one sends the other receives
    assert web.fields["connections"] == db.fields["connections"] == 8
    assert web.fields["bytes_sent"] == db.fields["bytes_received"] == 121431
    assert web.fields["bytes_received"] == db.fields["bytes_sent"] == 113230
    assert web.fields["packets_sent"] == db.fields["packets_received"] == 1071
    assert web.fields["packets_received"] == db.fields["packets_sent"] == 1069
    assert "bytes_sent_per_s" not in web.fields  # a rate needs two readings


def test_masqueraded_source_without_the_host_table_is_external() -> None:
    (db,) = _peer_samples(DB, "db_node", "db_node", "")
    assert db.tags["peer"] == "external" and db.tags["peer_tier"] == "external"


def test_inside_the_node_is_not_peer_traffic() -> None:
    conns = parse(_table("web_node"))
    assert len(conns) == 34
    fl = flows(conns, LocalNets.of(_state("web_node")))
    # nginx → WordPress on Docker's bridge, the proxy device on loopback, IGMP: all left out
    assert {f.remote for f in fl} == {"10.236.1.14"}
    assert all(f.outgoing for f in fl)


def test_totals_are_monotonic_across_readings() -> None:
    line = ("ipv4 2 tcp 6 431999 ESTABLISHED src=172.18.0.2 dst=10.0.0.9 sport=40000 dport=3306 "
            "packets={p} bytes={b} src=10.0.0.9 dst=10.0.0.2 sport=3306 dport=40000 packets=1 "
            "bytes={r} [ASSURED] mark=0 zone=0 use=2")
    local = LocalNets(frozenset({"10.0.0.2"}), (ipaddress.ip_network("172.18.0.0/16"),))
    acct = PeerAccounting(tier="app", tiers={"db1": "db"})

    def step(t: int, text: str) -> dict[str, Any]:
        fl = flows(parse(text), local)
        (s,) = acct.update(t * 10**9, [("db1", f) for f in fl])
        return dict(s.fields)

    a = step(0, line.format(p=10, b=1000, r=500))
    assert a["bytes_sent"] == 1000 and a["bytes_received"] == 500 and a["connections"] == 1
    b = step(2, line.format(p=20, b=3000, r=700))  # the connection grew
    assert b["bytes_sent"] == 3000 and b["bytes_sent_per_s"] == 1000.0
    assert b["bytes_received_per_s"] == 100.0
    c = step(4, "")  # it left the table: totals stay, no connection, zero rate
    assert c["bytes_sent"] == 3000 and c["connections"] == 0 and c["bytes_sent_per_s"] == 0.0
    d = step(6, line.format(p=1, b=100, r=50))  # same 5-tuple, a new connection
    assert d["bytes_sent"] == 3100 and d["bytes_received"] == 750


def test_unreadable_and_unaccounted_lines() -> None:
    assert parse_line("") is None and parse_line("garbage") is None
    unaccounted = ("ipv4 2 tcp 6 100 TIME_WAIT src=172.18.0.2 dst=10.0.0.9 sport=1 dport=2 "
                   "src=10.0.0.9 dst=10.0.0.2 sport=2 dport=1 [ASSURED] mark=0 zone=0 use=2")
    conn = parse_line(unaccounted)
    assert conn is not None and not conn.accounted
    assert flows([conn], LocalNets(frozenset({"10.0.0.2"}), ())) == []


def test_node_addresses_and_what_is_local() -> None:
    web = _state("web_node")
    assert nic_addresses(web) == ["10.236.2.55"]
    local = LocalNets.of(web)
    assert local.contains("10.236.2.55") and local.contains("172.18.0.3")
    assert local.contains("127.0.0.1") and local.contains("fe80::1")
    assert not local.contains("10.236.1.14") and not local.contains("10.236.2.1")


def test_peer_directory_refreshes_on_unknown_address_at_most_every_min_gap() -> None:
    calls: list[int] = []

    def lookup() -> dict[str, Peer]:
        calls.append(1)
        return {"10.0.0.1": Peer("n1", "lxd1")}

    d = PeerDirectory(lookup, ttl=3600, min_gap=3600)
    assert d.resolve({"10.0.0.1", "10.9.9.9"}) == {"10.0.0.1": Peer("n1", "lxd1")}
    d.resolve({"10.9.9.9"})  # unknown again, but within min_gap: no new lookup
    assert len(calls) == 1


def test_iface_counters_and_rates() -> None:
    web = _state("web_node")
    later = json.loads(json.dumps(web))
    later["network"]["eth0"]["counters"]["bytes_received"] += 4000
    later["network"]["eth0"]["counters"]["packets_sent"] += 10
    first = iface_samples_between(None, StateReading(0, web))
    assert [s.tags["iface"] for s in first] == ["br-eaf15940d5eb", "docker0", "eth0"]
    eth0 = first[2].fields
    assert eth0["bytes_received"] == web["network"]["eth0"]["counters"]["bytes_received"]
    assert eth0["drops_sent"] == web["network"]["eth0"]["counters"]["packets_dropped_outbound"]
    assert "bytes_received_per_s" not in eth0
    second = iface_samples_between(StateReading(0, web), StateReading(2 * 10**9, later))
    rates = second[2].fields
    assert rates["bytes_received_per_s"] == 2000.0 and rates["packets_sent_per_s"] == 5.0
    assert rates["bytes_sent_per_s"] == 0.0
    assert all(s.measurement == "flow_iface" for s in second)


def test_peer_collector_reads_the_node_table_and_the_hosts(tmp_path: Path) -> None:
    from collectors.flow.peer import PeerCollector
    from collectors.node import NodeState

    state = {**_state("db_node"), "pid": 4242, "status": "Running"}
    (tmp_path / "4242" / "net").mkdir(parents=True)
    (tmp_path / "self" / "net").mkdir(parents=True)
    (tmp_path / "4242" / "net" / "nf_conntrack").write_text(_table("db_node"))
    (tmp_path / "self" / "net" / "nf_conntrack").write_text(_table("host"))
    enabled: list[int] = []

    def enable(pid: int) -> bool:
        enabled.append(pid)
        return True

    peers = PeerDirectory(lambda: {a: Peer(n, "lxd") for a, n in ADDRESSES.items()})
    c = PeerCollector(NodeState(lambda: state), peers, TIERS, DB, proc=tmp_path,
                      enable=enable)
    (s,) = c.collect()
    assert s.tags["peer"] == WEB and s.fields["bytes_received"] == 121431
    c.collect()
    assert enabled == [4242]  # accounting switched on once per init pid
    stopped = NodeState(lambda: {**state, "status": "Stopped"})
    assert PeerCollector(stopped, peers, TIERS, DB, proc=tmp_path).collect() == []
