"""The agent's on-disk spool: FIFO, bounded, counts every eviction, survives reopening."""

from __future__ import annotations

from pathlib import Path

from agents.spool import Spool


def test_fifo_and_remove(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=10_000)
    for i in range(5):
        assert sp.append("t", b"k", f"m{i}".encode(), samples=1) == 0
    got = sp.peek(3)
    assert [e.value for e in got] == [b"m0", b"m1", b"m2"]
    sp.remove_through(got[-1].seq)
    assert [e.value for e in sp.peek(10)] == [b"m3", b"m4"]
    assert sp.stats().messages == 2 and sp.stats().bytes == 4


def test_bound_evicts_oldest_and_counts(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=100)
    for i in range(10):
        sp.append("t", None, bytes([65 + i]) * 30, samples=7)
    st = sp.stats()
    assert st.bytes <= 100 and st.messages == 3
    assert st.dropped_messages == 7 and st.dropped_samples == 49
    assert [e.value[:1] for e in sp.peek(10)] == [b"H", b"I", b"J"]


def test_message_larger_than_spool_is_counted_not_kept(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=50)
    sp.append("t", None, b"x" * 51, samples=4)
    assert sp.stats().messages == 0 and sp.stats().dropped_samples == 4


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sp = Spool(path, max_bytes=40)
    for i in range(3):
        sp.append("t", b"k", bytes([i]) * 20, samples=2)
    sp.close()
    again = Spool(path, max_bytes=40)
    st = again.stats()
    assert st.messages == 2 and st.bytes == 40 and st.dropped_samples == 2
    assert [e.topic for e in again.peek(5)] == ["t", "t"]
