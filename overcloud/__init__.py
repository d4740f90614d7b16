"""OverCloud core: typed events and samples, their wire format, settings, the Kafka bus.

Everything else in the distribution may import this package; it imports none of them
(an import-linter contract in CI keeps that true).
"""

__version__ = "0.1.0"
