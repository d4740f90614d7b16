"""Collectors measure; they never talk to Kafka (an import-linter contract checks it).

The plugin contract follows Telegraf's `Gather`: a collector has a `name`, a `layer`, and a
`collect() -> list[Sample]`. Collectors are built by name from `REGISTRY` so agents and
configuration refer to them by string at the edge only.
"""
