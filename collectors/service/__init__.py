"""Service-layer collectors: HTTP probes of the SaaS and the state of its stack containers."""

from collectors.service.container import ContainerCollector
from collectors.service.http import HttpProbeCollector

__all__ = ["ContainerCollector", "HttpProbeCollector"]
