"""Resource-layer collectors (CPU, memory, disk, network of UnderCloud hosts and containers)."""

from collectors.resource.host import HostCollector
from collectors.resource.instance import InstanceCollector
from collectors.resource.undercloud import UnderCloudCollector

__all__ = ["HostCollector", "InstanceCollector", "UnderCloudCollector"]
