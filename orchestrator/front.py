"""An OverCloud's URL: the edge's route from its port to its web nodes (edge/).

The URL `http://127.0.0.1:<port>/` is served by the edge, which balances connections over
every web node's nginx (port 80 of its address on the OverCloud's bridge). This module is
how the workflows change that route, each change live once the edge says so:

- `publish`: the route to the request's web nodes at the addresses the registry records
  (`moved` gives a moving node's new one). Provisioning publishes once every web node is
  deployed; a migration publishes the moved node's new address once the new node serves;
  an update publishes the new request's web nodes (added ones once they serve, retired ones
  left out before they drain); resume publishes where the nodes run now (their addresses
  may have changed).
- `drain`: after a web node left the route, its nginx finishes the requests it holds and
  closes idle keep-alive connections (`oc-nginx drain`: a graceful reload), and the edge
  counts no connection left to it; only then may the node stop.
- `unpublish`: the port closes (pause, delete). Open connections finish.
"""

from __future__ import annotations

from edge.routes import backend, drop_route, running, set_route, wait_applied, wait_drained
from orchestrator.hosts import HostDriver
from orchestrator.provision import STACK_DIR, Context
from orchestrator.registry import OverCloudRecord
from orchestrator.request import OverCloudRequest
from overcloud.errors import PermanentError, TemporaryError

WEB_PORT = 80
"""Where a web node's nginx listens on its address (compose.yml: HTTP_PORT)."""


def backends(req: OverCloudRequest, rec: OverCloudRecord,
             moved: dict[str, str] | None = None) -> list[str]:
    """`ADDR:80` of each web node of `req`, at its address in `rec` unless `moved` gives
    another."""
    addresses = {n.node: n.address for n in rec.nodes} | (moved or {})
    out = []
    for node in req.nodes_of("web"):
        if not addresses.get(node):
            raise TemporaryError(f"web node {node} has no address yet")
        out.append(backend(addresses[node], WEB_PORT))
    if not out:
        raise PermanentError(f"{req.name} has no web node to serve its URL")
    return out


def publish(c: Context, req: OverCloudRequest, *, moved: dict[str, str] | None = None
            ) -> list[str]:
    """Route `req`'s URL port to its web nodes; returns once the edge serves the route."""
    rec = c.registry.get(req.name)
    if rec is None or rec.port is None:
        raise PermanentError(f"{req.name} has no URL port")
    found = backends(req, rec, moved)
    wait_applied(c.settings, set_route(c.settings, rec.port, req.name, found), rec.port)
    return found


def unpublish(c: Context, name: str) -> None:
    """Close `name`'s URL port on the edge (nothing to do when it has none)."""
    rec = c.registry.get(name)
    if rec is None or rec.port is None:
        return
    serial = drop_route(c.settings, rec.port)
    if running(c.settings):
        wait_applied(c.settings, serial)


def drain(c: Context, host: HostDriver, node: str, address: str) -> None:
    """`node` (at `address`, already out of the route) finishes what it serves: its nginx
    reloads gracefully (old workers finish their requests and close idle keep-alive
    connections), then the edge has no connection left to it."""
    container = host.exec(node, "docker", "compose", "--project-directory", STACK_DIR, "ps",
                          "-q", "nginx", timeout=30).strip()
    if container:
        host.exec(node, "docker", "exec", container, "oc-nginx", "drain", timeout=90)
    wait_drained(c.settings, [backend(address, WEB_PORT)], timeout=60)
