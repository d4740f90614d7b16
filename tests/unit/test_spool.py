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


# --- the history of acknowledged messages (replayed when the broker loses its log) ---------

from agents.spool import Ack  # noqa: E402


def _acked(sp: Spool, offsets: list[int], partition: int = 0, now: float = 1000.0) -> int:
    entries = sp.peek(len(offsets))
    return sp.acknowledge([Ack(e.seq, e.topic, partition, o) for e, o in zip(entries, offsets,
                                                                            strict=True)], now)


def test_acknowledged_messages_stay_as_history_not_waiting(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=10_000, history_bytes=10_000,
               history_seconds=60)
    for i in range(4):
        sp.append("t", b"k", f"m{i}".encode(), samples=1)
    assert _acked(sp, [10, 11]) == 0
    st = sp.stats()
    assert (st.messages, st.history_messages, st.history_bytes) == (2, 2, 4)
    assert [e.value for e in sp.peek(10)] == [b"m2", b"m3"]
    assert [(m.topic, m.partition, m.offset) for m in sp.marks()] == [("t", 0, 11)]


def test_offset_going_back_requeues_history_first_and_counts(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=10_000, history_bytes=10_000,
               history_seconds=60)
    for i in range(5):
        sp.append("t", b"k", f"m{i}".encode(), samples=1)
    _acked(sp, [100, 101, 102])
    # the broker restarted: the next acknowledgement on the partition starts at 0 again
    assert _acked(sp, [0]) == 3
    st = sp.stats()
    assert st.broker_resets == 1 and st.replayed_messages == 3
    # the history goes out again, in its order, before what still waits
    assert [e.value for e in sp.peek(10)] == [b"m0", b"m1", b"m2", b"m4"]
    assert [m.offset for m in sp.marks()] == [0]
    assert _acked(sp, [1, 2, 3, 4]) == 0, "offsets of the new log going up: no second reset"


def test_other_partitions_and_increasing_offsets_are_no_reset(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=10_000, history_bytes=10_000,
               history_seconds=60)
    for i in range(3):
        sp.append("t", b"k", f"m{i}".encode(), samples=1)
    _acked(sp, [7], partition=0)
    assert _acked(sp, [3], partition=1) == 0
    assert _acked(sp, [8], partition=0) == 0
    assert sp.stats().broker_resets == 0


def test_history_bounded_by_age_and_bytes_evictions_counted(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=10_000, history_bytes=25, history_seconds=60)
    for i in range(6):
        sp.append("t", None, bytes([65 + i]) * 10, samples=1)
    _acked(sp, [0, 1], now=1000.0)
    _acked(sp, [2, 3], now=1030.0)
    st = sp.stats()
    assert st.history_bytes <= 25 and st.history_messages == 2 and st.history_evicted == 2
    _acked(sp, [4], now=1095.0)  # the two acknowledged at 1030 are older than 60 s now
    st = sp.stats()
    assert st.history_messages == 1 and st.history_evicted == 2, "expiry by age is not a loss"


def test_requeue_after_reconnect_and_reopen_with_old_schema(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
               " key BLOB, value BLOB NOT NULL, samples INTEGER NOT NULL)")
    db.execute("INSERT INTO queue (topic, key, value, samples) VALUES ('t', NULL, x'41', 1)")
    db.commit()
    db.close()
    sp = Spool(path, max_bytes=1000, history_bytes=1000, history_seconds=60)
    assert sp.stats().messages == 1, "a spool written by an older agent is still delivered"
    sp.append("t", None, b"B", samples=1)
    _acked(sp, [0, 1], now=__import__("time").time())
    assert sp.stats().messages == 0
    assert sp.requeue_acked() == 2
    assert [e.value for e in sp.peek(10)] == [b"A", b"B"] and sp.marks() == []
