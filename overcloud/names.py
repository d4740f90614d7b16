"""OverCloud names: one rule, checked wherever a name arrives from outside.

An OverCloud's name becomes part of container, network and database names, so it is a DNS
label: 2 to 32 of `a-z`, `0-9` and `-`, starting with a letter and not ending with `-`
(the same rule as request documents, `orchestrator/request.py`). Checked with `fullmatch`:
a `$` anchor would let a trailing newline through.
"""

from __future__ import annotations

import re

OVERCLOUD_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
RULE = "a DNS label: 2 to 32 of a-z, 0-9 and '-', starting with a letter, not ending with '-'"


def is_overcloud_name(name: object) -> bool:
    return isinstance(name, str) and OVERCLOUD_NAME.fullmatch(name) is not None


def devlake_database(prefix: str, overcloud: str) -> str:
    """The DevLake database of OverCloud `overcloud`; raises ValueError for a bad name."""
    if not is_overcloud_name(overcloud):
        raise ValueError(f"{overcloud!r} is not an OverCloud name ({RULE})")
    return prefix + overcloud
