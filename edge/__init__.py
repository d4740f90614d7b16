"""The edge: the TCP balancer that owns the OverClouds' URLs (server.py) and its route
table, written by the orchestrator (routes.py)."""
