"""Parameters for `stack/compose.yml`: generated secrets and the per-node role.

Secrets are made with `secrets.token_urlsafe` (letters, digits, `-`, `_`), so they can sit in
a .env file and an SQL statement without quoting. They are generated per OverCloud and
stored by the caller; there is no default password anywhere.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from enum import StrEnum

from orchestrator.stack import STACK_DIR

COMPOSE_FILE = STACK_DIR / "compose.yml"
PROJECT = "oc"
"""The Compose project of every node's stack (one per node). Not the OverCloud's name: a
pooled node's stack runs before any OverCloud claims it (orchestrator/pool.py), and Compose
cannot rename a project, so containers are `oc-db-1`, volumes `oc_db-data`, on every node."""
SECRETS_FILE = "/etc/overcloud/secrets.env"
"""In the db and wordpress containers: the secrets rotated in place when a pooled node is
claimed (KEY=value lines); they win over the container's environment (the entrypoint and
config-default.php read it). Outlives a restart, not a re-creation: the .env is rotated too."""
SOURCE_SECRETS = f'[ ! -r {SECRETS_FILE} ] || . {SECRETS_FILE}; '
"""Shell prefix for a command in the db container that uses `$DB_ROOT_PASSWORD` & co."""


def container(service: str) -> str:
    """The container Compose names for `service` in a node's stack."""
    return f"{PROJECT}-{service}-1"
WP_KEYS = (
    "WP_AUTH_KEY", "WP_SECURE_AUTH_KEY", "WP_LOGGED_IN_KEY", "WP_NONCE_KEY",
    "WP_AUTH_SALT", "WP_SECURE_AUTH_SALT", "WP_LOGGED_IN_SALT", "WP_NONCE_SALT",
)


class Role(StrEnum):
    """What one node runs: the database, the web tier (nginx, with an app replica beside
    it), an app replica only (WordPress), or all of it."""

    DB = "db"
    WEB = "web"
    APP = "app"
    ALL = "all"

    @property
    def profiles(self) -> list[str]:
        return ["db", "web"] if self is Role.ALL else [self.value]


@dataclass(frozen=True)
class StackSecrets:
    db_name: str
    db_user: str
    db_password: str
    db_root_password: str
    wp_keys: dict[str, str]

    @classmethod
    def generate(cls, db_name: str = "wordpress", db_user: str = "wordpress") -> StackSecrets:
        return cls(
            db_name=db_name,
            db_user=db_user,
            db_password=secrets.token_urlsafe(24),
            db_root_password=secrets.token_urlsafe(24),
            wp_keys={k: secrets.token_urlsafe(48) for k in WP_KEYS},
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def env_file(
    stack_name: str,
    creds: StackSecrets,
    role: Role = Role.ALL,
    *,
    http_port: int = 80,
    http_bind: str = "0.0.0.0",
    db_host: str = "db",
    db_bind: str = "127.0.0.1",
    app_bind: str = "127.0.0.1",
    app_upstream: str = "wordpress:80",
) -> str:
    """The .env text for one node. `db_host`: the DB node's address on a `web` node;
    `db_bind`: the address MariaDB publishes 3306 on (the node's own, on a `db` node);
    `app_bind`: where an app replica publishes WordPress for other nodes' nginx (its node's
    address); `app_upstream`: the app replicas a `web` node's nginx spreads requests over."""
    values = {
        "STACK_NAME": stack_name,
        "COMPOSE_PROFILES": ",".join(role.profiles),
        "DB_NAME": creds.db_name,
        "DB_USER": creds.db_user,
        "DB_PASSWORD": creds.db_password,
        "DB_ROOT_PASSWORD": creds.db_root_password,
        "DB_HOST": db_host,
        "DB_BIND": db_bind,
        "HTTP_BIND": http_bind,
        "HTTP_PORT": str(http_port),
        "APP_BIND": app_bind,
        "APP_UPSTREAM": app_upstream,
        **creds.wp_keys,
    }
    if role in (Role.WEB, Role.APP):
        del values["DB_ROOT_PASSWORD"]
    return "".join(f"{k}={v}\n" for k, v in values.items())
