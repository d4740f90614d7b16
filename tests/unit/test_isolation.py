"""The forward filter that keeps OverCloud networks apart (orchestrator/isolation.py).

The rendering is checked for what it lets through, and every rendered script is handed to the
real `nft` in check mode (`nft -c`: parsed and validated by the kernel, not applied). The
traffic itself is tested end to end in tests/integration/test_provisioning.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.isolation import Isolation, render, table_name
from overcloud.errors import TemporaryError

A0, B1, A2 = "10.231.128.0/27", "10.231.128.32/27", "10.231.128.64/27"
BRIDGES = {"ocbrx0": ("alpha", A0), "ocbrx1": ("beta", B1), "ocbrx2": ("alpha", A2)}


def _nft_check(script: str) -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed here (`overcloud services up lxd` installs nftables)")
    done = subprocess.run(["nft", "-c", "-f", "-"], input=script, text=True,
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr + script


def _elements(script: str, name: str) -> set[str]:
    """The elements of set `name` in a rendered script."""
    lines = script.splitlines()
    start = lines.index(f"  set {name} {{")
    for line in lines[start:]:
        if line.strip().startswith("elements = {"):
            return {e.strip() for e in line.split("{", 1)[1].rsplit("}", 1)[0].split(",")}
        if line.strip() == "}":
            break
    return set()


def test_a_bridge_forwards_only_to_its_own_overcloud() -> None:
    script = render("ocbr", BRIDGES)
    assert _elements(script, "same") == {
        '"ocbrx0" . "ocbrx0"', '"ocbrx0" . "ocbrx2"', '"ocbrx2" . "ocbrx0"',
        '"ocbrx2" . "ocbrx2"', '"ocbrx1" . "ocbrx1"'}
    assert _elements(script, "out_ok") == {f'"{b}" . {n}' for b in ("ocbrx0", "ocbrx2")
                                           for n in (A0, A2)} | {f'"ocbrx1" . {B1}'}
    assert _elements(script, "in_ok") == {f'{n} . "{b}"' for b in ("ocbrx0", "ocbrx2")
                                          for n in (A0, A2)} | {f'{B1} . "ocbrx1"'}
    chain = [line.strip() for line in script.splitlines()[script.splitlines().index(
        "  chain forward {"):]]
    assert chain[2:7] == [
        "iifname . oifname @same accept",
        'oifname != "ocbrx*" iifname . ip daddr @out_ok accept',
        'iifname != "ocbrx*" ip saddr . oifname @in_ok accept',
        'iifname "ocbrx*" drop',
        'oifname "ocbrx*" drop',
    ], "accepts by set, then every other packet in or out of an OverCloud bridge dropped"
    _nft_check(script)


def test_nothing_to_keep_apart_removes_the_table() -> None:
    script = render("ocbr", {})
    assert "chain" not in script and f"delete table inet {table_name('ocbr')}" in script
    _nft_check(script)


def test_a_bridge_without_a_subnet_still_reaches_its_own_bridges() -> None:
    script = render("ocbr", {"ocbrx0": ("alpha", ""), "ocbrx1": ("alpha", "")})
    assert len(_elements(script, "same")) == 4
    assert _elements(script, "out_ok") == set() == _elements(script, "in_ok")
    _nft_check(script)


def test_same_inputs_same_script_and_one_table_per_prefix() -> None:
    assert render("ocbr", BRIDGES) == render("ocbr", dict(reversed(BRIDGES.items())))
    assert table_name("ocbr") != table_name("octest")


def test_sync_keeps_the_bridges_of_a_daemon_that_does_not_answer(tmp_path: Path) -> None:
    applied: list[str] = []
    up = {"a": True}

    def host_a() -> dict[str, str]:
        if not up["a"]:
            raise TemporaryError("lxd1 does not answer")
        return {"ocbrx0": ("alpha", A0)}

    iso = Isolation("ocbr", tmp_path, {"lxd1": host_a, "lxd2": lambda: {"ocbrx1": ("alpha", B1)}},
                    runner=applied.append)
    both = {"ocbrx0": ("alpha", A0), "ocbrx1": ("alpha", B1)}
    assert iso.sync() == both
    up["a"] = False
    assert iso.sync() == both, "lxd1's bridge stays"
    assert applied[0] == applied[1]
    # a host no longer configured is forgotten
    iso2 = Isolation("ocbr", tmp_path, {"lxd2": lambda: {}}, runner=applied.append)
    assert iso2.sync() == {}
    assert "chain" not in applied[-1]


def test_an_nft_failure_is_a_temporary_error_not_silence(tmp_path: Path) -> None:
    def refuse(script: str) -> None:
        raise TemporaryError("nft refused")

    iso = Isolation("ocbr", tmp_path, {"lxd1": lambda: {"ocbrx0": ("a", A0)}}, runner=refuse)
    with pytest.raises(TemporaryError):
        iso.sync()
