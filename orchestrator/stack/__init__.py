"""The 3-tier SaaS stack (nginx → WordPress → MariaDB): Dockerfiles and Compose templates.

Every image is built from Debian packages on our own base image, tagged with our own pinned
tag (`IMAGE_TAG`), never `latest`. Bump `IMAGE_TAG` whenever a Dockerfile changes in a way
that running OverClouds must notice; the image cache is keyed by file contents anyway.
"""

from __future__ import annotations

from pathlib import Path

STACK_DIR = Path(__file__).parent
IMAGE_TAG = "1"
BASE_IMAGE = "overcloud/debian:bookworm"
TIERS = ("mariadb", "wordpress", "nginx")


def image_name(tier: str) -> str:
    return f"overcloud/{tier}:{IMAGE_TAG}"
