"""Flow-layer collectors: traffic per interface of a node and between an OverCloud's nodes."""

from collectors.flow.iface import IfaceCollector
from collectors.flow.peer import PeerCollector

__all__ = ["IfaceCollector", "PeerCollector"]
