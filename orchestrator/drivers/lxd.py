"""pylxd clients for the UnderCloud hosts (the only importer of `pylxd`).

Each host is reached over HTTPS with our client certificate: pylxd refuses to migrate from a
unix-socket client, and a remote UnderCloud host is reached this way too. The server
certificate is pinned from where it is kept *now*, read at each call, never from a copy made
earlier: a remote's pin is the file the settings or the inventory name (`LxdHost.tls`), so
replacing it takes effect at once; a local daemon's is its own `server.crt`.
"""

from __future__ import annotations

import pylxd
from pylxd.client import get_session_for_url

from overcloud.errors import ServiceError
from overcloud.services.lxd import client_dir
from overcloud.settings import LxdHost, Settings


def client_for(settings: Settings, host: LxdHost) -> pylxd.Client:
    """A client that trusts exactly the host's pinned server certificate (a wrong one fails
    the TLS handshake: `pylxd.exceptions.ClientConnectionFailed`)."""
    if host.remote:
        assert host.tls is not None
        crt, key, pinned = host.tls
    else:
        conf = client_dir(settings)
        crt, key, pinned = conf / "client.crt", conf / "client.key", host.lxd_dir / "server.crt"
    for path, what in ((crt, "client certificate"), (key, "client key"),
                       (pinned, "pinned server certificate")):
        if not path.is_file():
            raise ServiceError(f"host {host.name}: no {what} at {path}")
    cert, verify = (str(crt), str(key)), str(pinned)
    session = get_session_for_url(host.https_url, verify=verify, cert=cert)
    # requests lets $REQUESTS_CA_BUNDLE override the session's `verify`: pylxd would then
    # pin the first CA of the system bundle and every call would fail
    session.trust_env = False
    return pylxd.Client(endpoint=host.https_url, cert=cert, verify=verify, session=session)
