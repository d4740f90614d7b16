"""The `overcloud` command line (the DevTower's interface).

Sub-commands import the packages they drive lazily, so `overcloud --help` stays fast and the
core does not depend on the layers above it at import time.
"""
