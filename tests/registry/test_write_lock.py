"""A writer that waits for another connection's write lock does not hold up reads (issue 17, finding 3):
before, an enrolment held the registry's lock while SQLite made it wait up to 30 s, and every attribution
(the version check of the in-memory index) waited behind it."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from mimicry.detector.registry import Registry


def test_reads_go_on_while_a_write_waits_for_another_connection(db, encoder, portfolios):
    reg = Registry.open(db)
    reg.enrol("Ann", sorted(portfolios[next(iter(portfolios))].glob("*.png"))[:3], encoder)
    other = sqlite3.connect(str(db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing, for 1.5 s
    writer_done = threading.Event()
    threading.Thread(target=lambda: (reg.add_artist("Bob"), writer_done.set()), daemon=True).start()
    time.sleep(0.2)  # the writer is waiting for the lock now
    t0 = time.perf_counter()
    assert reg.has_works() and [a.name for a in reg.list_artists()] == ["Ann"]
    read_s = time.perf_counter() - t0
    time.sleep(1.3)
    other.execute("COMMIT")
    assert writer_done.wait(10), "the waiting write never went through"
    assert {a.name for a in reg.list_artists()} == {"Ann", "Bob"}
    reg.close()
    other.close()
    assert read_s < 0.5, f"reads waited {read_s:.2f} s behind a write waiting for the database"


def test_a_write_gives_up_after_its_timeout_with_the_databases_locked_error(db):
    reg = Registry.open(db, timeout=0.5)
    other = sqlite3.connect(str(db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    t0 = time.perf_counter()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        reg.add_artist("Bob")
    assert 0.4 < time.perf_counter() - t0 < 3
    other.execute("ROLLBACK")
    reg.add_artist("Bob")  # and the registry is usable afterwards
    assert [a.name for a in reg.list_artists()] == ["Bob"]
    reg.close()
    other.close()
