"""The DevTower API from the other side: what the CLI uses with `--tower URL --token T`.

Methods mirror `devtower.ops` and return the same plain data, so a command renders the
same output whether it ran locally or through the API. Every API error becomes a
`UserError` with the server's message (a 422 keeps its problems), so the CLI prints one line
and no traceback; an unreachable DevTower says so.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from typing import Any

import httpx

from overcloud.errors import UserError
from overcloud.problems import DocumentInvalid, Problem


class RemoteInvalid(DocumentInvalid):
    what = " in the OverCloud request (checked by the DevTower):"


class TowerError(UserError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TowerClient:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0,
                 verify: bool | str = True) -> None:
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--tower must be an http:// or https:// URL (got {url[:80]!r})")
        if not token:
            raise UserError("--tower needs a token: --token T or OVERCLOUD_TOKEN")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, source: str = "request", **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise UserError(f"DevTower at {self.url} unreachable: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code < 400:
            return body
        err = body.get("error") if isinstance(body, dict) else None
        message = str(err.get("message")) if isinstance(err, dict) else r.text[:200]
        if r.status_code == 422 and isinstance(body.get("problems"), list):
            raise RemoteInvalid(source, [Problem(str(p.get("path", "")), p.get("line"),
                                                 str(p.get("message", "")))
                                         for p in body["problems"] if isinstance(p, dict)])
        if r.status_code == 401:
            message += " (check --token / OVERCLOUD_TOKEN)"
        raise TowerError(r.status_code, f"DevTower: {message}")

    # --- the same operations as devtower.ops ------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/whoami"))

    def list(self) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", "/v1/overclouds")["overclouds"])

    def show(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/overclouds/{_seg(name)}"))

    def validate(self, text: str, source: str) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/validate", source, content=text.encode(),
                               headers={"Content-Type": "application/yaml"}))

    def submit(self, text: str, source: str, dry_run: bool = False) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/overclouds", source, content=text.encode(),
                               params={"dry_run": "true"} if dry_run else None,
                               headers={"Content-Type": "application/yaml"}))

    def backups(self, name: str) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/overclouds/{_seg(name)}/backups")["backups"])

    def backup(self, name: str, keep: int) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/overclouds/{_seg(name)}/backups",
                               params={"keep": keep}))

    def restore(self, name: str, backup_id: str, source: str = "") -> dict[str, Any]:
        params = {"backup": backup_id} | ({"source": source} if source else {})
        return dict(self._call("POST", f"/v1/overclouds/{_seg(name)}/restore", params=params))

    def pause(self, name: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/overclouds/{_seg(name)}/pause"))

    def resume(self, name: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/overclouds/{_seg(name)}/resume"))

    def delete(self, name: str, keep_data: bool) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/overclouds/{_seg(name)}",
                               params={"keep_data": str(keep_data).lower()}))

    def latest(self, name: str) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/overclouds/{_seg(name)}/latest")["series"])

    def query(self, name: str, q: str) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/overclouds/{_seg(name)}/query",
                               params={"q": q})["series"])

    def top(self, name: str, window: str = "10m") -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/overclouds/{_seg(name)}/top",
                               params={"window": window}))

    def events(self, name: str, after: int = 0) -> Iterator[dict[str, Any]]:
        """Server-sent events of one OverCloud, resuming after `after` on reconnects."""
        headers = {"Last-Event-ID": str(after)} if after else {}
        try:
            with self._http.stream("GET", f"/v1/overclouds/{_seg(name)}/events",
                                   headers=headers, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise TowerError(r.status_code, f"DevTower: {r.text[:200]}")
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        yield dict(json.loads(line[6:]))
        except httpx.HTTPError as exc:
            raise UserError(f"DevTower at {self.url}: event stream broke: {exc}") from None


def _seg(name: str) -> str:
    """One path segment: an OverCloud name never needs escaping, anything else is refused."""
    if not name or len(name) > 64 or any(c in name for c in "/?#%\\ \n\r\t"):
        raise UserError(f"not an OverCloud name: {name[:64]!r}")
    return name
