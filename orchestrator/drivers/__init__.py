"""Drivers: the only modules that talk to outside systems' client libraries (pylxd, docker)."""
