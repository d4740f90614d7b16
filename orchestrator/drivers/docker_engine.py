"""The host's Docker engine as the image builder sees it (the only importer of `docker`).

Images we make carry the label `org.overcloud.key`: the hash of their build inputs. A tag
whose label differs from the wanted key is stale and gets rebuilt or reloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from overcloud.errors import ServiceError

log = logging.getLogger(__name__)
KEY_LABEL = "org.overcloud.key"


class DockerEngine:
    def __init__(self, base_url: str, timeout: int = 1800) -> None:
        # API 1.41 is Debian 12's dockerd 20.10; pinning avoids a version probe per call
        self.client = docker.DockerClient(base_url=base_url, version="1.41", timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def image_key(self, ref: str) -> str | None:
        """The build key recorded on image `ref`, or None when there is no such image."""
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        labels: dict[str, str] = (image.attrs.get("Config") or {}).get("Labels") or {}
        return labels.get(KEY_LABEL, "")

    def import_rootfs(self, tar: Path, ref: str, key: str) -> None:
        repo, tag = ref.rsplit(":", 1)
        out = self.client.api.import_image_from_file(
            str(tar), repository=repo, tag=tag,
            changes=[f"LABEL {KEY_LABEL}={key}", 'CMD ["/bin/bash"]'],
        )
        if self.image_key(ref) != key:
            raise ServiceError(f"docker import of {tar} as {ref} failed: {str(out)[-300:]}")

    def build(self, context: Path, ref: str, key: str, log_file: Path) -> None:
        """Build with the host network (our dockerd has no bridge), streaming to `log_file`."""
        stream: Iterator[dict[str, Any]] = self.client.api.build(
            path=str(context), tag=ref, labels={KEY_LABEL: key}, network_mode="host",
            rm=True, forcerm=True, pull=False, decode=True,
        )
        with log_file.open("a") as out:
            out.write(f"=== build {ref} from {context}\n")
            for chunk in stream:
                if "stream" in chunk:
                    out.write(chunk["stream"])
                if "error" in chunk:
                    out.write(f"ERROR: {chunk['error']}\n")
                    raise ServiceError(
                        f"building {ref} failed: {chunk['error'].strip()} (log: {log_file})"
                    )
        if self.image_key(ref) != key:
            raise ServiceError(f"building {ref} produced no image (log: {log_file})")

    def save(self, refs: list[str], dest: Path) -> None:
        """`docker save` of several images into one tar, so shared layers are stored once."""
        api = self.client.api
        # docker-py's get_image() takes a single name; the endpoint takes many
        resp = api._get(api._url("/images/get"), params={"names": refs}, stream=True)
        api._raise_for_status(resp)
        with dest.open("wb") as f:
            for chunk in resp.iter_content(chunk_size=1 << 20):
                f.write(chunk)

    def load(self, src: Path) -> None:
        with src.open("rb") as f:
            self.client.images.load(f)
