"""The `overcloud` command line (the top layer): local commands and the DevTower's.

Sub-commands import the packages they drive lazily, so `overcloud --help` stays fast.
"""
