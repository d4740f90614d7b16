"""The event journal's decisions (when to replay, what, once) and the orchestrator's inbox.

The broker side (`LogProbe` reading records back from a real tansu) is exercised by the
integration tests in tests/integration/test_broker_outage.py; here a stand-in answers the
probe's one question, which is all `replay_journal` asks of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator.inbox import Inbox
from overcloud.errors import TemporaryError
from overcloud.replay import EventJournal, LogMark, record_digest, replay_journal


class Log:
    """A one-partition log: what the broker holds, and a probe that reads it back."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []
        self.unreachable = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> tuple[int, int]:
        self.records.append((key, value))
        return 0, len(self.records) - 1

    def missing(self, marks: Sequence[LogMark]) -> list[LogMark]:
        if self.unreachable:
            raise TemporaryError("broker away")
        return [m for m in marks if m.offset >= len(self.records)
                or record_digest(*self.records[m.offset]) != m.digest]


def publish(j: EventJournal, log: Log, value: bytes, now: float | None = None) -> bool:
    part, off = log.send("ev", b"k", value)
    return j.record("ev", b"k", value, part, off, now=now)


@pytest.fixture
def journal(tmp_path: Path) -> EventJournal:
    return EventJournal(tmp_path / "journal.sqlite", window=600, max_bytes=10_000)


def test_nothing_replayed_while_the_log_holds_the_events(journal: EventJournal) -> None:
    log = Log()
    for i in range(3):
        assert not publish(journal, log, f"e{i}".encode())
    assert replay_journal(journal, log.send, log) == 0  # type: ignore[arg-type]
    assert len(log.records) == 3


def test_a_lost_log_is_replayed_once_in_order(journal: EventJournal) -> None:
    log = Log()
    for i in range(3):
        publish(journal, log, f"e{i}".encode())
    log.records.clear()  # the broker restarted with an empty log
    assert replay_journal(journal, log.send, log) == 3  # type: ignore[arg-type]
    assert [v for _, v in log.records] == [b"e0", b"e1", b"e2"]
    # a second process that noticed too finds the replayed records: no second replay
    assert replay_journal(journal, log.send, log) == 0  # type: ignore[arg-type]
    assert journal.counter("replays") == 1 and journal.counter("replayed_events") == 3


def test_log_regrown_past_our_offsets_is_still_seen(journal: EventJournal) -> None:
    """The new log may hold as many records as the old one did: the offsets exist, the
    records at them are others (the digest tells)."""
    log = Log()
    for i in range(3):
        publish(journal, log, f"e{i}".encode())
    log.records[:] = [(b"x", f"other{i}".encode()) for i in range(5)]
    assert replay_journal(journal, log.send, log) == 3  # type: ignore[arg-type]


def test_acknowledgement_going_back_is_suspect_and_replays_what_came_before(
        journal: EventJournal) -> None:
    log = Log()
    for i in range(3):
        publish(journal, log, f"e{i}".encode())
    log.records.clear()
    assert publish(journal, log, b"new"), "offset 0 after 2: the log may have gone back"
    assert replay_journal(journal, log.send, log, suspect=True) == 4  # type: ignore[arg-type]
    assert [v for _, v in log.records] == [b"new", b"e0", b"e1", b"e2", b"new"]


def test_suspect_but_records_still_there_is_a_race_not_a_reset(journal: EventJournal) -> None:
    """Two publishers' acknowledgements recorded out of order look like a step back."""
    log = Log()
    publish(journal, log, b"a")
    p1, o1 = log.send("ev", b"k", b"b")
    p2, o2 = log.send("ev", b"k", b"c")
    assert not journal.record("ev", b"k", b"c", p2, o2)
    assert journal.record("ev", b"k", b"b", p1, o1)
    assert replay_journal(journal, log.send, log, suspect=True) == 0  # type: ignore[arg-type]


def test_probe_that_cannot_answer(journal: EventJournal) -> None:
    log = Log()
    publish(journal, log, b"a")
    log.unreachable = True
    with pytest.raises(TemporaryError):  # a plain check: ask again later
        replay_journal(journal, log.send, log)  # type: ignore[arg-type]
    assert replay_journal(journal, log.send, log, suspect=True) == 1  # type: ignore[arg-type]


def test_replay_that_dies_half_way_is_finished_by_the_next(journal: EventJournal) -> None:
    log = Log()
    for i in range(3):
        publish(journal, log, f"e{i}".encode())
    log.records.clear()

    def fail(topic: str, key: bytes | None, value: bytes) -> tuple[int, int]:
        if value == b"e1":
            raise TemporaryError("broker gone again")
        return log.send(topic, key, value)

    with pytest.raises(TemporaryError):
        replay_journal(journal, fail, log)  # type: ignore[arg-type]
    assert journal.reset_pending()
    assert replay_journal(journal, log.send, None) == 3, "due without asking the broker"
    assert not journal.reset_pending()


def test_journal_keeps_a_window_and_a_byte_bound(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "j.sqlite", window=60, max_bytes=25)
    log = Log()
    now = time.time()
    publish(j, log, b"a" * 10, now=now - 120)
    publish(j, log, b"b" * 10, now=now - 30)
    publish(j, log, b"c" * 10, now=now - 20)
    publish(j, log, b"d" * 10, now=now)
    assert [e.value[:1] for e in j.entries()] == [b"c", b"d"]
    assert j.counter("evicted") == 1, "b left before its time (bytes): counted; a expired"


def test_concurrent_replays_across_threads_replay_once(journal: EventJournal) -> None:
    log = Log()
    for i in range(5):
        publish(journal, log, f"e{i}".encode())
    log.records.clear()
    lock = threading.Lock()

    def send(topic: str, key: bytes | None, value: bytes) -> tuple[int, int]:
        with lock:
            return log.send(topic, key, value)

    done: list[int] = []
    threads = [threading.Thread(target=lambda: done.append(
        replay_journal(journal, send, log))) for _ in range(3)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == [0, 0, 5] and len(log.records) == 5


def test_inbox_counts_starts_and_skips_finished(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite")
    assert not inbox.done("e1") and inbox.starts("e1") == 0
    assert inbox.begin("e1", "OverCloudRequested") == 1
    inbox.retry("e1")  # a temporary error: handled again later, not a second start
    assert inbox.begin("e1", "OverCloudRequested") == 1
    assert not inbox.done("e1"), "started, not finished: a crash here handles it again"
    inbox.finish("e1")
    inbox.close()
    again = Inbox(tmp_path / "inbox.sqlite")
    assert again.done("e1") and again.starts("e1") == 1
