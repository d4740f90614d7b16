"""The `overcloud` command line (the top layer): local commands and the DevTower's."""
