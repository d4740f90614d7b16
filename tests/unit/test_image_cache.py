"""The image cache trusts only complete artifacts whose files still have their recorded size,
and its keys change whenever a build input changes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from orchestrator.images import Cache, keys
from overcloud.settings import load_settings


def test_half_built_or_damaged_artifacts_do_not_count(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    d = cache.fresh("stack", "k1")
    (d / "images.tar").write_bytes(b"x" * 100)
    assert cache.complete("stack", "k1") is None  # no complete.json yet: died half-way
    cache.finish("stack", "k1", ["images.tar"], seconds=1.5)
    assert cache.complete("stack", "k1")["seconds"] == 1.5  # type: ignore[index]
    (d / "images.tar").write_bytes(b"x" * 50)  # truncated later
    assert cache.complete("stack", "k1") is None
    again = cache.fresh("stack", "k1")
    assert list(again.iterdir()) == []


def test_keys_follow_the_build_inputs() -> None:
    s = load_settings(env={})
    k = keys(s)
    assert keys(s) == k
    other = replace(s, undercloud=replace(s.undercloud, mirror="http://127.0.0.1:1/debian"))
    k2 = keys(other)
    assert k2.base != k.base and k2.stack != k.stack and k2.noderoot != k.noderoot
    assert k2.node != k.node
    # the cache directory is not a build input
    moved = replace(s, undercloud=replace(s.undercloud, image_cache="/elsewhere"))
    assert keys(moved) == k
