"""Resource-layer collectors (CPU, memory, disk, network of UnderCloud hosts)."""

from collectors.resource.host import HostCollector

__all__ = ["HostCollector"]
