# Image of our own services in docker-compose.yml (`agent`, `devlake`): the `overcloud` CLI.
#
#   docker compose build            # or: docker build -t overcloud .
#   docker run --rm overcloud --help
#
# Not built on our dev/CI machines: no container registry is reachable there, so the
# python base image cannot be pulled. Build it where Docker can pull images; the compose
# file that uses it is validated offline by tests/unit/test_compose_file.py.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OVERCLOUD_STATE_DIR=/var/lib/overcloud

# Only the packaging files and packages get here (see .dockerignore).
COPY . /tmp/overcloud-src
RUN pip install /tmp/overcloud-src \
    && rm -rf /tmp/overcloud-src \
    && useradd --system --uid 10001 --user-group --create-home \
       --home-dir /var/lib/overcloud --shell /usr/sbin/nologin overcloud

# State (the agent's spool) lives in /var/lib/overcloud: mount a volume there.
USER overcloud
WORKDIR /var/lib/overcloud

ENTRYPOINT ["overcloud"]
CMD ["--help"]
