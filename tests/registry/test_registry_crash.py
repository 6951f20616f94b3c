"""A process killed with SIGKILL in the middle of an enrolment leaves the database consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from registry_fixtures import ENCODER_DIR, REPO

from mimicry.detector.registry import Registry

# Enrols the files given; at the half-way row of the write stage (rows inserted, transaction open)
# it says so and waits to be killed.
CHILD = textwrap.dedent("""
    import sys, time
    from mimicry.detector.registry import Registry
    from mimicry.detector.style import StyleEncoder

    db, encoder_dir, mode, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    enc = StyleEncoder.from_dir(encoder_dir, intra_op_threads=1)

    def progress(stage, done, total):
        if mode == "stall" and stage == "write" and done == total // 2:
            print("MID", flush=True)
            time.sleep(120)

    with Registry.open(db) as reg:
        report = reg.enrol("Victim", files, enc, consent="crash test", progress=progress)
    print("DONE", report.added, flush=True)
""")


def _child(db, files, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(ENCODER_DIR), mode, *map(str, files)],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_sigkill_mid_enrolment_leaves_artist_absent_then_enrols_fully(db, encoder, portfolios):
    with Registry.open(db) as reg:
        reg.enrol("Kept", sorted(portfolios["ink"].iterdir()), encoder)
    files = sorted(portfolios["pastel"].iterdir()) + sorted(portfolios["hatch"].iterdir())

    proc = _child(db, files, "stall")
    try:
        line = proc.stdout.readline().strip()
        assert line == "MID", f"child did not reach the middle of the write: {line!r}"
        # Rows are in the open transaction (the WAL may hold them), but none is committed.
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()

    with Registry.open(db) as reg:
        assert reg._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert reg._conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert [(a.name, a.works) for a in reg.list_artists()] == [("Kept", 8)]
        assert reg.work_count() == 8  # no orphan rows of the killed enrolment

    proc = _child(db, files, "finish")  # the lock died with the process: the next writer goes ahead
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.split() == ["DONE", str(len(files))]
    with Registry.open(db) as reg:
        assert {a.name: a.works for a in reg.list_artists()} == {"Kept": 8, "Victim": len(files)}
        assert reg.get_artist("Victim").consent == "crash test"
