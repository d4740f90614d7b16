"""One agent per spool: a second agent of the same node and layers is refused at start (two
on one spool took each other's acknowledgements for a broker that lost its log and resent
their history in a loop), while other nodes' and other layers' agents are not affected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.runtime import AgentIdentity, open_spool
from overcloud.errors import UserError
from overcloud.samples import Layer
from overcloud.settings import load_settings


def test_a_second_agent_of_the_same_node_is_refused(tmp_path: Path) -> None:
    s = load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_STATE_DIR": str(tmp_path)})
    me = AgentIdentity(node="blog-n1", host="lxd1", overcloud="blog")
    open_spool(s, me, Layer.RESOURCE, Layer.FLOW)
    open_spool(s, AgentIdentity(node="blog-n2", host="lxd1", overcloud="blog"), Layer.RESOURCE)
    open_spool(s, me, Layer.SERVICE)  # other layers: another spool
    # another process (an agent started twice) is refused, with a message, not a traceback
    code = ("from agents.runtime import AgentIdentity, open_spool\n"
            "from overcloud.samples import Layer\nfrom overcloud.settings import load_settings\n"
            f"s = load_settings(env={{'OVERCLOUD_CONFIG': '', 'OVERCLOUD_STATE_DIR': {str(tmp_path)!r}}})\n"
            "open_spool(s, AgentIdentity(node='blog-n1', host='lxd1', overcloud='blog'), "
            "Layer.RESOURCE, Layer.FLOW)\n")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60)
    assert other.returncode != 0 and "already runs" in other.stderr, other.stderr
    # and in this process too (the lock is per open file, not per process)
    with pytest.raises(UserError, match="another agent of blog-n1"):
        open_spool(s, me, Layer.RESOURCE, Layer.FLOW)
