"""InfluxDB accounts: who may read and write which DevLake, down in the database itself.

Why: the DevTower's query checks (devtower.readonly) are one lock; InfluxDB's own
authorisation is the second, so even a query those checks miss cannot read or change another
OverCloud's DevLake. Our local InfluxDB runs with `auth-enabled = true` and three kinds of
account:

- `admin` (all privileges): the orchestrator creating and dropping databases and users, the
  operator's tools (alerts, top, placement's load reads, `metrics query`);
- `devlake`: WRITE on every DevLake database and nothing else — what the DevLake consumer
  uses, so a hostile sample on the bus reaches no statement that reads or drops;
- `ro_<overcloud>`: READ on that OverCloud's database only — what the DevTower's `/query`
  runs as, and what a developer points their own Grafana at.

The accounts file (`<state_dir>/secrets/influxdb.json`, mode 0600, written by
`overcloud services up influxdb`) holds the admin and devlake passwords and a key from which
each read-only password is derived for one incarnation of an OverCloud (its name and request
id): recomputable by the orchestrator and the DevTower without storing it, and different
after a delete and re-create of the same name, so an old owner's credentials do not open a
newcomer's DevLake. Without the file (a remote InfluxDB, the v2 dialect) clients send no
credentials, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from overcloud import influxql
from overcloud.influxql import QL, compose

ADMIN = "admin"
DEVLAKE = "devlake"


@dataclass(frozen=True)
class Account:
    username: str
    password: str

    def __repr__(self) -> str:  # never a password in a log line or a traceback
        return f"Account({self.username!r}, password=…)"


class AccountsError(Exception):
    """The accounts file is unreadable or incomplete (a message for the operator)."""


def new_accounts(path: Path) -> dict[str, str]:
    """Create the accounts file with fresh random passwords (0600, written atomically)."""
    data = {
        "admin_user": "overcloud_admin",
        "admin_password": secrets.token_urlsafe(24),
        "devlake_user": "overcloud_devlake",
        "devlake_password": secrets.token_urlsafe(24),
        "read_key": secrets.token_hex(32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    tmp.replace(path)
    return data


def load_accounts(path: Path) -> dict[str, str] | None:
    """The accounts, or None when there is no file (InfluxDB without authentication)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AccountsError(f"InfluxDB accounts file {path} unreadable: {exc}") from None
    keys = ("admin_user", "admin_password", "devlake_user", "devlake_password", "read_key")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in keys):
        raise AccountsError(f"InfluxDB accounts file {path} is incomplete; remove it and the "
                            "InfluxDB data beside it to start over")
    return {k: data[k] for k in keys}


def account(credentials: str, role: str) -> Account | None:
    """The `admin` or `devlake` account from the file `credentials` (None: no auth)."""
    data = load_accounts(Path(credentials)) if credentials else None
    if data is None:
        return None
    return Account(data[f"{role}_user"], data[f"{role}_password"])


def reader_name(overcloud: str) -> str:
    """The read-only user of one OverCloud's DevLake (the name is a validated DNS label)."""
    return f"ro_{overcloud}"


def reader(credentials: str, overcloud: str, incarnation: str) -> Account | None:
    """The read-only account of one incarnation of `overcloud` (None: no auth)."""
    data = load_accounts(Path(credentials)) if credentials else None
    if data is None:
        return None
    mac = hmac.new(bytes.fromhex(data["read_key"]), f"{overcloud}\0{incarnation}".encode(),
                   hashlib.sha256).hexdigest()
    return Account(reader_name(overcloud), mac[:40])


# --- statements (built by overcloud.influxql: names validated, quoted) ---------------------


def grant(privilege: str, name: str, user: str) -> QL:
    db, who = influxql.database(name), influxql.ident(user)
    if privilege == "READ":
        return compose("GRANT READ ON {} TO {}", db, who)
    if privilege == "WRITE":
        return compose("GRANT WRITE ON {} TO {}", db, who)
    raise ValueError(f"privilege {privilege!r}: READ or WRITE")


def create_user(user: str, password: str) -> QL:
    return compose("CREATE USER {} WITH PASSWORD {}", influxql.ident(user),
                   influxql.string(password))


def set_password(user: str, password: str) -> QL:
    return compose("SET PASSWORD FOR {} = {}", influxql.ident(user), influxql.string(password))


def drop_user(user: str) -> QL:
    return compose("DROP USER {}", influxql.ident(user))
