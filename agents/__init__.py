"""Agents schedule collectors, tag their samples, and publish them to Kafka without losing any.

Layering: agents use `collectors` and the `overcloud` core; nothing imports agents.
"""
