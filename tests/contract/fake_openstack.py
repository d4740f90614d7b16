"""An OpenStack-compatible HTTP API on 127.0.0.1, small enough to read, for the driver contract.

No real OpenStack fits our machines (Debian's keystone and nova pull 200-300 packages each,
and nova needs a hypervisor), so the contract suite runs `openstacksdk` — unmodified, over
real HTTP — against this stand-in. It speaks the parts of the public APIs the driver uses,
with their real shapes and rules, and keeps its state in memory:

- Keystone v3: version discovery, password auth (wrong credentials → 401) issuing a token
  and a service catalog; every other request must carry that token (else 401).
- Nova v2.1 (microversions up to 2.79): flavors; servers create (validated: image, flavor,
  networks must exist, the network must have a subnet) → BUILD → ACTIVE after
  `build_seconds`, or → ERROR with a `fault` for an image the "hypervisor" cannot boot;
  list/detail with Nova's regex `name` filter; os-stop/os-start; delete → task_state
  `deleting`, then gone (404) after `delete_seconds`. Addresses come from the subnet.
- Glance v2: images (list with `name` filter, show).
- Neutron v2.0: networks (create, list with `name`/`tags` filters, tags PUT, delete —
  409 NetworkInUse while a server still has an address on it) and subnets.

It does not run VMs: a server is a record whose status changes with time. What the tests
learn from it is whether the driver uses the APIs the way a real cloud requires.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

MAX_MICROVERSION = "2.79"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "badRequest") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass
class Server:
    id: str
    name: str
    image: dict[str, Any]
    flavor: dict[str, Any]
    metadata: dict[str, str]
    nets: list[tuple[str, str]]  # (network id, address)
    fail: str | None
    """Boot failure message (the image cannot boot), or None."""
    created: float = field(default_factory=time.monotonic)
    created_at: str = field(default_factory=_now)
    power: str = "on"  # on | off
    transition_at: float = 0.0  # start/stop settles at this time
    deleting_at: float | None = None


@dataclass
class Network:
    id: str
    name: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    subnets: list[dict[str, Any]] = field(default_factory=list)


class FakeOpenStack:
    """The API server. `start()` binds a free loopback port; `stop()` shuts it down."""

    def __init__(self, *, build_seconds: float = 0.4, delete_seconds: float = 0.3,
                 user: str = "overcloud", password: str = "s3cret-test-only",
                 project: str = "overcloud") -> None:
        self.build_seconds = build_seconds
        self.delete_seconds = delete_seconds
        self.user, self.password, self.project = user, password, project
        self.project_id = uuid.uuid4().hex
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()
        self.flavors = [
            {"id": str(i), "name": name, "vcpus": cpu, "ram": ram, "disk": disk}
            for i, (name, cpu, ram, disk) in enumerate(
                [("m1.tiny", 1, 512, 1), ("m1.small", 1, 2048, 20), ("m1.medium", 2, 4096, 40),
                 ("m1.large", 4, 8192, 80)], start=1)
        ]
        self.images: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, Server] = {}
        self.networks: dict[str, Network] = {}
        self._httpd: ThreadingHTTPServer | None = None

    # --- set-up ---------------------------------------------------------------------------

    def add_image(self, name: str, boot_failure: str | None = None) -> str:
        """An image; with `boot_failure` every server built from it goes to ERROR with it."""
        image_id = str(uuid.uuid4())
        self.images[image_id] = {
            "id": image_id, "name": name, "status": "active", "visibility": "public",
            "disk_format": "qcow2", "container_format": "bare", "min_disk": 0, "min_ram": 0,
            "size": 1 << 20, "created_at": _now(), "updated_at": _now(), "tags": [],
            "self": f"/v2/images/{image_id}", "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image", "_boot_failure": boot_failure,
        }
        return image_id

    def add_network(self, name: str, cidr: str | None = None) -> str:
        net = Network(id=str(uuid.uuid4()), name=name)
        self.networks[net.id] = net
        if cidr:
            self._create_subnet({"network_id": net.id, "cidr": cidr, "ip_version": 4, "name": name})
        return net.id

    def start(self) -> FakeOpenStack:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="fake-openstack", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def cloud_entry(self, password: str | None = None, url: str | None = None) -> dict[str, Any]:
        """A clouds.yaml entry for this API (password auth, like a real cloud's)."""
        return {
            "auth_type": "password",
            "auth": {"auth_url": f"{url or self.url}/identity/v3", "username": self.user,
                     "password": self.password if password is None else password,
                     "project_name": self.project, "user_domain_name": "Default",
                     "project_domain_name": "Default"},
            "region_name": "RegionOne", "identity_api_version": 3, "interface": "public",
        }

    @staticmethod
    def write_clouds_yaml(path: Path, clouds: dict[str, dict[str, Any]]) -> Path:
        path.write_text(yaml.safe_dump({"clouds": clouds}))
        return path

    # --- state ----------------------------------------------------------------------------

    def _status(self, s: Server) -> tuple[str, str | None]:
        """(status, task_state) now, from the server's timestamps."""
        now = time.monotonic()
        if now < s.created + self.build_seconds:
            return "BUILD", "spawning"
        if s.fail:
            return "ERROR", None
        if now < s.transition_at:
            return ("ACTIVE", "powering-off") if s.power == "off" else ("SHUTOFF", "powering-on")
        return ("ACTIVE" if s.power == "on" else "SHUTOFF"), None

    def _gone(self, s: Server) -> bool:
        return s.deleting_at is not None and time.monotonic() >= s.deleting_at + self.delete_seconds

    def _live_servers(self) -> list[Server]:
        for sid in [sid for sid, s in self.servers.items() if self._gone(s)]:
            del self.servers[sid]
        return list(self.servers.values())

    def _server_json(self, s: Server, detail: bool = True) -> dict[str, Any]:
        links = [{"rel": "self", "href": f"{self.url}/compute/v2.1/servers/{s.id}"}]
        if not detail:
            return {"id": s.id, "name": s.name, "links": links}
        status, task = self._status(s)
        if s.deleting_at is not None:
            task = "deleting"
        addresses: dict[str, list[dict[str, Any]]] = {}
        if status != "ERROR" and status != "BUILD":
            for net_id, addr in s.nets:
                addresses.setdefault(self.networks[net_id].name if net_id in self.networks else net_id,
                                     []).append({"version": 4, "addr": addr,
                                                 "OS-EXT-IPS:type": "fixed",
                                                 "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"})
        body: dict[str, Any] = {
            "id": s.id, "name": s.name, "status": status, "tenant_id": self.project_id,
            "user_id": "u-" + self.user, "metadata": s.metadata, "hostId": "", "tags": [],
            "image": s.image, "flavor": s.flavor, "created": s.created_at, "updated": _now(),
            "addresses": addresses, "accessIPv4": "", "accessIPv6": "", "links": links,
            "OS-EXT-STS:vm_state": {"BUILD": "building", "ERROR": "error", "ACTIVE": "active",
                                    "SHUTOFF": "stopped"}[status],
            "OS-EXT-STS:task_state": task, "OS-EXT-STS:power_state": 1 if status == "ACTIVE" else 0,
            "OS-EXT-AZ:availability_zone": "nova", "config_drive": "", "key_name": None,
            "security_groups": [{"name": "default"}], "locked": False, "description": None,
            "progress": 0, "os-extended-volumes:volumes_attached": [],
        }
        if status == "ERROR":
            body["fault"] = {"code": 500, "created": s.created_at, "message": s.fail}
        return body

    def _create_server(self, req: dict[str, Any]) -> Server:
        name = req.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "Invalid input for field/attribute name.")
        image = self.images.get(str(req.get("imageRef", "")))
        if image is None:
            raise ApiError(400, f"Image {req.get('imageRef')} could not be found.")
        flavor = next((f for f in self.flavors if f["id"] == str(req.get("flavorRef"))), None)
        if flavor is None:
            raise ApiError(400, f"Flavor {req.get('flavorRef')} could not be found.")
        metadata = req.get("metadata") or {}
        if not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 255 and len(v) <= 255
                   for k, v in metadata.items()):
            raise ApiError(400, "Invalid input for field/attribute metadata.")
        nets_req = req.get("networks")
        if nets_req is None:
            raise ApiError(400, "Invalid input for field/attribute networks: required since 2.37")
        if nets_req == "auto":
            nets_req = [{"uuid": next(iter(self.networks))}] if self.networks else []
        elif nets_req == "none":
            nets_req = []
        nets = []
        for n in nets_req:
            net = self.networks.get(str(n.get("uuid", "")))
            if net is None:
                raise ApiError(400, f"Network {n.get('uuid')} could not be found.")
            if not net.subnets:
                raise ApiError(400, f"Network {net.id} requires a subnet in order to boot instances on.")
            nets.append((net.id, self._next_address(net)))
        flavor_body = {"vcpus": flavor["vcpus"], "ram": flavor["ram"], "disk": flavor["disk"],
                       "ephemeral": 0, "swap": 0, "original_name": flavor["name"], "extra_specs": {}}
        server = Server(id=str(uuid.uuid4()), name=name, image={"id": image["id"], "links": []},
                        flavor=flavor_body, metadata=dict(metadata), nets=nets,
                        fail=(f"Build of instance {name} aborted: {image['_boot_failure']}"
                              if image["_boot_failure"] else None))
        self.servers[server.id] = server
        return server

    def _next_address(self, net: Network) -> str:
        subnet = ipaddress.ip_network(net.subnets[0]["cidr"])
        used = {a for s in self._live_servers() for nid, a in s.nets if nid == net.id}
        used.add(net.subnets[0]["gateway_ip"])
        for host in itertools.islice(subnet.hosts(), 1, None):
            if str(host) not in used:
                return str(host)
        raise ApiError(409, f"No more IP addresses available on network {net.id}.", "conflictingRequest")

    def _network_json(self, n: Network) -> dict[str, Any]:
        return {"id": n.id, "name": n.name, "description": n.description, "tags": n.tags,
                "subnets": [s["id"] for s in n.subnets], "status": "ACTIVE", "admin_state_up": True,
                "shared": False, "tenant_id": self.project_id, "project_id": self.project_id,
                "mtu": 1450, "router:external": False, "port_security_enabled": True,
                "availability_zones": ["nova"], "created_at": _now(), "updated_at": _now(),
                "revision_number": 1}

    def _create_subnet(self, req: dict[str, Any]) -> dict[str, Any]:
        net = self.networks.get(str(req.get("network_id", "")))
        if net is None:
            raise ApiError(404, f"Network {req.get('network_id')} could not be found.", "NetworkNotFound")
        try:
            cidr = ipaddress.ip_network(str(req.get("cidr")), strict=True)
        except ValueError:
            raise ApiError(400, f"Invalid input for cidr: {req.get('cidr')!r}", "HTTPBadRequest") from None
        if any(ipaddress.ip_network(s["cidr"]).overlaps(cidr) for s in net.subnets):
            raise ApiError(400, f"Invalid input: {cidr} overlaps with another subnet", "InvalidInput")
        gateway = req.get("gateway_ip") or str(next(cidr.hosts()))
        if ipaddress.ip_address(gateway) not in cidr:
            raise ApiError(400, f"Gateway IP {gateway} not in subnet {cidr}", "InvalidInput")
        subnet = {"id": str(uuid.uuid4()), "name": req.get("name", ""), "network_id": net.id,
                  "cidr": str(cidr), "ip_version": 4, "gateway_ip": gateway, "enable_dhcp": True,
                  "tenant_id": self.project_id, "project_id": self.project_id, "tags": [],
                  "allocation_pools": [{"start": str(next(itertools.islice(cidr.hosts(), 1, None))),
                                        "end": str(list(cidr.hosts())[-1])}],
                  "dns_nameservers": [], "host_routes": [], "created_at": _now(), "updated_at": _now()}
        net.subnets.append(subnet)
        return subnet

    # --- routing --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               token: str | None) -> tuple[int, Any, dict[str, str]]:
        base = self.url
        if path.rstrip("/") in ("/identity", "/identity/v3"):
            version = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                       "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
                       "media-types": [{"base": "application/json",
                                        "type": "application/vnd.openstack.identity-v3+json"}]}
            if path.rstrip("/") == "/identity":
                return 300, {"versions": {"values": [version]}}, {}
            return 200, {"version": version}, {}
        if path == "/identity/v3/auth/tokens" and method == "POST":
            return self._auth(body)
        discovery = path.rstrip("/") in ("/compute", "/compute/v2.1", "/image", "/network")
        if token not in self.tokens and not discovery:  # version documents are public
            return 401, {"error": {"code": 401, "title": "Unauthorized",
                                   "message": "The request you have made requires authentication."}}, {}
        with self.lock:
            if path.startswith("/compute"):
                return self._compute(method, path[len("/compute"):], query, body)
            if path.startswith("/image"):
                return self._image(method, path[len("/image"):], query)
            if path.startswith("/network"):
                return self._network(method, path[len("/network"):], query, body)
        raise ApiError(404, f"no such resource: {path}", "itemNotFound")

    def _auth(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        ident = (body or {}).get("auth", {}).get("identity", {})
        user = ident.get("password", {}).get("user", {})
        scope = (body or {}).get("auth", {}).get("scope", {}).get("project", {})
        if (ident.get("methods") != ["password"] or user.get("name") != self.user
                or user.get("password") != self.password or scope.get("name") != self.project):
            return 401, {"error": {"code": 401, "title": "Unauthorized",
                                   "message": "The request you have made requires authentication."}}, {}
        token = uuid.uuid4().hex
        self.tokens.add(token)
        base = self.url
        catalog = [
            {"type": t, "name": n, "id": uuid.uuid4().hex,
             "endpoints": [{"id": uuid.uuid4().hex, "interface": "public", "region": "RegionOne",
                            "region_id": "RegionOne", "url": f"{base}{suffix}"}]}
            for t, n, suffix in [("identity", "keystone", "/identity"),
                                 ("compute", "nova", "/compute/v2.1"),
                                 ("image", "glance", "/image"), ("network", "neutron", "/network")]
        ]
        domain = {"id": "default", "name": "Default"}
        return 201, {"token": {
            "methods": ["password"], "issued_at": _now(),
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "user": {"id": "u-" + self.user, "name": self.user, "domain": domain},
            "project": {"id": self.project_id, "name": self.project, "domain": domain},
            "roles": [{"id": "r-member", "name": "member"}], "catalog": catalog,
        }}, {"X-Subject-Token": token}

    def _compute(self, method: str, path: str, query: dict[str, list[str]], body: Any,
                 ) -> tuple[int, Any, dict[str, str]]:
        version = {"id": "v2.1", "status": "CURRENT", "version": MAX_MICROVERSION,
                   "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
                   "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/"}]}
        if path.rstrip("/") == "":
            return 200, {"versions": [version]}, {}
        if path.rstrip("/") == "/v2.1":
            return 200, {"version": version}, {}
        parts = path.removeprefix("/v2.1/").strip("/").split("/")
        if parts[0] == "flavors":
            if len(parts) == 1 or parts[1] == "detail":
                detail = len(parts) > 1
                return 200, {"flavors": [self._flavor_json(f, detail) for f in self.flavors]}, {}
            flavor = next((f for f in self.flavors if f["id"] == parts[1]), None)
            if flavor is None:
                raise ApiError(404, f"Flavor {parts[1]} could not be found.", "itemNotFound")
            return 200, {"flavor": self._flavor_json(flavor, True)}, {}
        if parts[0] != "servers":
            raise ApiError(404, f"no such resource: {path}", "itemNotFound")
        if len(parts) == 1 and method == "POST":
            server = self._create_server((body or {}).get("server") or {})
            return 202, {"server": {"id": server.id, "links": self._server_json(server, False)["links"],
                                    "adminPass": uuid.uuid4().hex[:12],
                                    "security_groups": [{"name": "default"}],
                                    "OS-DCF:diskConfig": "MANUAL"}}, {}
        if len(parts) == 1 or parts[1] == "detail":
            servers = self._live_servers()
            if "name" in query:
                pattern = re.compile(query["name"][0])
                servers = [s for s in servers if pattern.search(s.name)]
            if "status" in query:
                servers = [s for s in servers if self._status(s)[0] == query["status"][0].upper()]
            detail = len(parts) > 1
            return 200, {"servers": [self._server_json(s, detail) for s in servers]}, {}
        server = next((s for s in self._live_servers() if s.id == parts[1]), None)
        if server is None:
            raise ApiError(404, f"Instance {parts[1]} could not be found.", "itemNotFound")
        if len(parts) == 2 and method == "GET":
            return 200, {"server": self._server_json(server)}, {}
        if len(parts) == 2 and method == "DELETE":
            if server.deleting_at is None:
                server.deleting_at = time.monotonic()
            return 204, None, {}
        if len(parts) == 3 and parts[2] == "action" and method == "POST":
            return self._action(server, body or {})
        raise ApiError(404, f"no such resource: {path}", "itemNotFound")

    def _flavor_json(self, f: dict[str, Any], detail: bool) -> dict[str, Any]:
        links = [{"rel": "self", "href": f"{self.url}/compute/v2.1/flavors/{f['id']}"}]
        if not detail:
            return {"id": f["id"], "name": f["name"], "links": links, "description": None}
        return {**f, "links": links, "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
                "os-flavor-access:is_public": True, "OS-FLV-DISABLED:disabled": False,
                "description": None, "extra_specs": {}}

    def _action(self, server: Server, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        status, task = self._status(server)
        if "os-start" in body or "os-stop" in body:
            want = "on" if "os-start" in body else "off"
            if status not in ("ACTIVE", "SHUTOFF") or task is not None or server.deleting_at:
                raise ApiError(409, f"Cannot '{next(iter(body))}' instance {server.id} while it is in "
                               f"vm_state {status.lower()}", "conflictingRequest")
            if (status == "ACTIVE") == (want == "on"):
                raise ApiError(409, f"Instance {server.id} is already {status.lower()}",
                               "conflictingRequest")
            server.power = want
            server.transition_at = time.monotonic() + self.build_seconds / 2
            return 202, None, {}
        raise ApiError(400, f"unsupported action {sorted(body)}")

    def _image(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        if path.rstrip("/") == "":
            return 300, {"versions": [{"id": "v2.16", "status": "CURRENT", "links": [
                {"rel": "self", "href": f"{self.url}/image/v2/"}]}]}, {}
        parts = path.strip("/").split("/")
        if parts[:2] != ["v2", "images"] or method != "GET":
            raise ApiError(404, f"no such resource: {path}", "itemNotFound")
        public = [{k: v for k, v in i.items() if not k.startswith("_")} for i in self.images.values()]
        if len(parts) == 2:
            if "name" in query:
                public = [i for i in public if i["name"] == query["name"][0]]
            return 200, {"images": public, "first": "/v2/images", "schema": "/v2/schemas/images"}, {}
        found = next((i for i in public if i["id"] == parts[2]), None)
        if found is None:
            raise ApiError(404, f"No image found with ID {parts[2]}", "itemNotFound")
        return 200, found, {}

    def _network(self, method: str, path: str, query: dict[str, list[str]], body: Any,
                 ) -> tuple[int, Any, dict[str, str]]:
        if path.rstrip("/") == "":
            return 200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
                {"rel": "self", "href": f"{self.url}/network/v2.0/"}]}]}, {}
        parts = path.strip("/").removeprefix("v2.0").strip("/").split("/")
        if parts[0] == "extensions":
            return 200, {"extensions": [{"alias": a, "name": a, "description": a, "updated": "",
                                         "links": []} for a in ("standard-attr-tag", "tag-creation")]}, {}
        if parts[0] == "networks":
            return self._networks_api(method, parts, query, body or {})
        if parts[0] == "subnets":
            if len(parts) == 1 and method == "POST":
                return 201, {"subnet": self._create_subnet((body or {}).get("subnet") or {})}, {}
            if len(parts) == 1 and method == "GET":
                subnets = [s for n in self.networks.values() for s in n.subnets]
                for key in ("network_id", "name", "cidr"):
                    if key in query:
                        subnets = [s for s in subnets if s[key] == query[key][0]]
                return 200, {"subnets": subnets}, {}
        raise ApiError(404, f"The resource could not be found: {path}", "HTTPNotFound")

    def _networks_api(self, method: str, parts: list[str], query: dict[str, list[str]],
                      body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if len(parts) == 1 and method == "GET":
            nets = list(self.networks.values())
            if "name" in query:
                nets = [n for n in nets if n.name == query["name"][0]]
            if "id" in query:
                nets = [n for n in nets if n.id == query["id"][0]]
            if "tags" in query:
                wanted = set(",".join(query["tags"]).split(","))
                nets = [n for n in nets if wanted <= set(n.tags)]
            return 200, {"networks": [self._network_json(n) for n in nets]}, {}
        if len(parts) == 1 and method == "POST":
            req = body.get("network") or {}
            net = Network(id=str(uuid.uuid4()), name=str(req.get("name", "")),
                          description=str(req.get("description", "")), tags=list(req.get("tags") or []))
            self.networks[net.id] = net
            return 201, {"network": self._network_json(net)}, {}
        net = self.networks.get(parts[1])
        if net is None:
            raise ApiError(404, f"Network {parts[1]} could not be found.", "NetworkNotFound")
        if len(parts) == 2 and method == "GET":
            return 200, {"network": self._network_json(net)}, {}
        if len(parts) == 2 and method == "DELETE":
            users = [s.id for s in self._live_servers() if any(nid == net.id for nid, _ in s.nets)
                     and self._status(s)[0] != "ERROR"]
            if users:
                raise ApiError(409, f"Unable to complete operation on network {net.id}. There are one "
                               "or more ports still in use on the network.", "NetworkInUse")
            del self.networks[net.id]
            return 204, None, {}
        if len(parts) == 3 and parts[2] == "tags" and method == "PUT":
            net.tags = [str(t) for t in body.get("tags", [])]
            return 200, {"tags": net.tags}, {}
        raise ApiError(404, "The resource could not be found.", "HTTPNotFound")


class _Handler(BaseHTTPRequestHandler):
    api: FakeOpenStack
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet; requests are recorded
        pass

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
            status, payload, headers = self.api.handle(
                method, split.path, parse_qs(split.query), body, self.headers.get("X-Auth-Token"))
        except ApiError as exc:
            status, headers = exc.status, {}
            if split.path.startswith("/network"):
                payload = {"NeutronError": {"type": exc.kind, "message": str(exc), "detail": ""}}
            else:
                payload = {exc.kind: {"code": exc.status, "message": str(exc)}}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            status, headers, payload = 400, {}, {"badRequest": {"code": 400, "message": f"malformed: {exc}"}}
        self.api.requests.append((method, self.path, status))
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        asked = self.headers.get("OpenStack-API-Version")
        if split.path.startswith("/compute") and asked:
            self.send_header("OpenStack-API-Version", asked)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
