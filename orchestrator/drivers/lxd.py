"""pylxd clients for the UnderCloud hosts (the only importer of `pylxd`).

Each host is reached over HTTPS with the client certificate that `overcloud services up lxd`
made and every host trusts: pylxd refuses to migrate from a unix-socket client, and a remote
UnderCloud host is reached this way too.
"""

from __future__ import annotations

import pylxd
from pylxd.client import get_session_for_url

from overcloud.services.lxd import client_dir
from overcloud.settings import LxdHost, Settings


def client_for(settings: Settings, host: LxdHost) -> pylxd.Client:
    """A client that pins the host's own server certificate (pylxd checks its fingerprint)."""
    conf = client_dir(settings)
    cert = (str(conf / "client.crt"), str(conf / "client.key"))
    verify = str(conf / "servercerts" / f"{host.name}.crt")
    session = get_session_for_url(host.https_url, verify=verify, cert=cert)
    # requests lets $REQUESTS_CA_BUNDLE override the session's `verify`: pylxd would then
    # pin the first CA of the system bundle and every call would fail
    session.trust_env = False
    return pylxd.Client(endpoint=host.https_url, cert=cert, verify=verify, session=session)
