"""pylxd clients for the UnderCloud hosts (the only importer of `pylxd`).

Each host is reached over HTTPS with the client certificate that `overcloud services up lxd`
made and every host trusts: pylxd refuses to migrate from a unix-socket client, and a remote
UnderCloud host is reached this way too.
"""

from __future__ import annotations

import pylxd

from overcloud.services.lxd import client_dir
from overcloud.settings import LxdHost, Settings


def client_for(settings: Settings, host: LxdHost) -> pylxd.Client:
    conf = client_dir(settings)
    return pylxd.Client(
        endpoint=host.https_url,
        cert=(str(conf / "client.crt"), str(conf / "client.key")),
        verify=str(conf / "servercerts" / f"{host.name}.crt"),
    )
