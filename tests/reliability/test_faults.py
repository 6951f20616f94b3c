"""Faults: a scan killed mid-way resumes without duplicates or losses; a tampered model is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from reliability_fixtures import MODEL, ROOT


def test_scan_killed_with_sigkill_resumes_without_duplicating_or_losing_rows(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    examples = sorted((ROOT / "examples").glob("*.png"))
    for i in range(300):
        os.link(examples[i % len(examples)], folder / f"img_{i:04d}.png")
    (folder / "img_bad.png").write_bytes(b"junk")
    out = tmp_path / "scan.jsonl"
    cmd = [sys.executable, "-m", "mimicry", "scan", str(folder), "--model", str(MODEL), "-o", str(out),
           "--batch-size", "4", "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size > 4000):
        assert proc.poll() is None, "the scan ended before it could be killed: make the folder bigger"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_before = out.read_text().count("\n")
    assert 0 < rows_before < 301
    done = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode in (1, 3), done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    sources = [r["source"] for r in rows]
    assert len(sources) == len(set(sources)) == 301  # every file exactly once
    assert {r["error_code"] for r in rows if r["source"].endswith("img_bad.png")} == {"unsupported_format"}


def _tampered(tmp_path):
    bad = tmp_path / "tampered"
    shutil.copytree(MODEL, bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    (bad / "model.onnx").write_bytes(bytes(data))
    return bad, json.loads((bad / "model.json").read_text())["onnx_sha256"]


def test_a_tampered_model_is_refused_by_serve_and_scan_naming_its_sha256(tmp_path):
    bad, expected_sha = _tampered(tmp_path)
    env = {**os.environ, "MIMICRY_KEYS_DB": str(tmp_path / "k.sqlite3")}
    serve = subprocess.run([sys.executable, "-m", "mimicry", "serve", "--model", str(bad), "--port", "0"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert serve.returncode == 2
    assert "sha256" in serve.stderr and expected_sha in serve.stderr, serve.stderr
    scan = subprocess.run([sys.executable, "-m", "mimicry", "scan", str(ROOT / "examples"), "--model", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert scan.returncode == 2
    assert "sha256" in (scan.stderr + scan.stdout) and expected_sha in (scan.stderr + scan.stdout)


def _jpegs(n: int, seed: int = 5) -> list[bytes]:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        arr = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).resize((900, 900), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def test_service_killed_mid_enrolment_leaves_the_registry_consistent(tmp_path):
    import sqlite3
    import threading

    import httpx
    from reliability_fixtures import ServeProcess

    from mimicry.detector.registry import Registry
    from mimicry.service.keys import KeyStore

    registry = tmp_path / "registry.sqlite3"
    key, _ = KeyStore(tmp_path / "keys.sqlite3").create("enroller", scope="enrol")
    outcomes = []
    # Kills at growing delays, the last one after the response: that enrolment must survive the kill.
    # Each attempt has its own images (a file belongs to one artist). Most of these kills land before or
    # after the write transaction, which lasts milliseconds after seconds of embedding:
    # test_registry_killed_inside_the_write_transaction_keeps_all_or_nothing kills inside it.
    for attempt, delay in enumerate((0.2, 0.6, 1.2, 2.5, None)):
        images = _jpegs(40, seed=attempt)
        files = [("files", (f"w{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
        srv = ServeProcess(tmp_path, env={"MIMICRY_REGISTRY": str(registry)}).wait_ready()
        headers = {"X-API-Key": key}
        name = f"artist {attempt}"
        assert httpx.post(srv.url + "/v1/artists", json={"name": name}, headers=headers).status_code == 201

        def post():
            try:
                httpx.post(srv.url + f"/v1/artists/{name}/works", files=files, headers=headers, timeout=120)
            except httpx.TransportError:
                pass  # the server died under it: expected

        t = threading.Thread(target=post)
        t.start()
        if delay is None:
            t.join(120)
        else:
            time.sleep(delay)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        t.join(30)
        with sqlite3.connect(registry) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        with Registry.open(registry) as reg:
            works = reg.get_artist(name).works
        assert works in (0, len(images)), f"killed after {delay} s: {works} of {len(images)} works enrolled"
        outcomes.append(works)
    assert outcomes[-1] == len(images), "an enrolment that was answered must survive a kill -9"
    print(f"\nkill -9 during enrolment at 0.2/0.6/1.2/2.5 s and after the answer: works {outcomes}")


_SLOW_ENROLMENT = """
import sys, time
from pathlib import Path
from mimicry.detector.registry import Registry
from mimicry.detector.style import StyleEncoder

registry, encoder, commit_each = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
files = sorted(Path(sys.argv[4]).glob("*.jpg"))
reg = Registry.open(registry)
real = reg._execute
inserted = 0

def slow_execute(sql, params=()):
    # every row of works takes 0.2 s to write, so the kill lands inside the write transaction
    global inserted
    out = real(sql, params)
    if sql.lstrip().upper().startswith("INSERT INTO WORKS"):
        inserted += 1
        if commit_each:  # the control: as if there were no transaction
            reg._conn.commit()
        print(f"inserted {inserted}", flush=True)
        time.sleep(0.2)
    return out

reg._execute = slow_execute
reg.enrol("Ann", files, StyleEncoder.from_dir(encoder))
print("done", flush=True)
"""


def _kill_during_inserts(tmp_path, commit_each: bool) -> int:
    """Enrol 12 works through a registry whose row writes are slow, kill -9 it after the 5th row is
    written, and return how many works the registry holds afterwards (checking its integrity)."""
    import sqlite3

    from mimicry.detector.registry import Registry

    folder = tmp_path / ("control" if commit_each else "real")
    (folder / "works").mkdir(parents=True)
    for i, data in enumerate(_jpegs(12, seed=40 + commit_each)):
        (folder / "works" / f"w{i:02d}.jpg").write_bytes(data)
    registry = folder / "registry.sqlite3"
    with Registry.open(registry) as reg:
        reg.add_artist("Ann")
    child = subprocess.Popen([sys.executable, "-c", _SLOW_ENROLMENT, str(registry), str(ROOT / "models" / "style-encoder"),
                              "1" if commit_each else "0", str(folder / "works")],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    seen = []
    for line in child.stdout:
        seen.append(line.strip())
        if line.strip() == "inserted 5":
            child.send_signal(signal.SIGKILL)
            break
    child.wait(30)
    assert "inserted 5" in seen and "done" not in seen, f"the kill did not land inside the write: {seen}"
    with sqlite3.connect(registry) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    with Registry.open(registry) as reg:
        return reg.get_artist("Ann").works


def test_registry_killed_inside_the_write_transaction_keeps_all_or_nothing(tmp_path):
    # The control shows the kill lands mid-write: committed row by row, 5 of 12 works survive it.
    assert _kill_during_inserts(tmp_path, commit_each=True) == 5
    # The registry's own transaction: none of them do.
    assert _kill_during_inserts(tmp_path, commit_each=False) == 0
