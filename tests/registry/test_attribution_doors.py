"""One attribution engine behind every door: the same image gets the same ``artists`` and ``copy_of``
evidence through Python (a Detector with an Attribution), ``mimicry scan`` (JSONL and CSV columns),
``mimicry check --json`` and HTTP ``/v1/detect``; a scan with attribution decodes each image once;
scans with and without attribution resume into each other's files as the rules say."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from registry_fixtures import ENCODER_DIR, REPO
from rich.console import Console
from typer.testing import CliRunner

from mimicry import exits, scan_cli
from mimicry.cli import app
from mimicry.detector import decode as decode_module
from mimicry.detector import scan as scan_lib
from mimicry.detector.attribution import Attribution
from mimicry.detector.detector import Detector
from mimicry.detector.registry import Registry, RegistryError
from mimicry.detector.style import StyleEncoder

MODEL = REPO / "models" / "default"


@pytest.fixture
def enrolled(tmp_path, encoder, portfolios) -> dict:
    """A registry with two artists, and queries: a new work in the style of one of them, and a
    re-encoded copy of one of that artist's enrolled works."""
    ink = tmp_path / "ink"
    shutil.copytree(portfolios["ink"], ink)
    works = sorted(ink.iterdir())
    query = tmp_path / "new_ink.png"
    shutil.move(works[-1], query)
    db = tmp_path / "registry.sqlite3"
    with Registry.open(db, aggregate=encoder.aggregate) as reg:
        reg.enrol("Ink Person", sorted(ink.iterdir()), encoder)
        reg.enrol("Flat", sorted(portfolios["flat"].iterdir()), encoder)
    copy = tmp_path / "reposted.jpg"
    Image.open(works[0]).convert("RGB").save(copy, quality=75)
    return {"db": db, "queries": [query, copy], "copied": works[0]}


def _same(got, want, path="evidence"):
    """Equal keys, order and values; floats to 1e-5 (the style encoder and the registry's matrix
    products may round differently for a batch of one and a batch of several)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            _same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), f"{path}: {got} != {want}"
    else:
        assert got == want and type(got) is type(want), f"{path}: {got!r} != {want!r}"


def _evidence(d: dict) -> dict:
    return {"artists": d["artists"], "attributed_to": d["attributed_to"], "copy_of": d["copy_of"]}


def test_the_same_evidence_through_python_scan_check_and_http(enrolled, tmp_path):
    from mimicry.service.app import create_app
    from mimicry.service.keys import KeyStore
    from mimicry.service.settings import Settings

    db, queries = enrolled["db"], enrolled["queries"]
    with Attribution.open(db, ENCODER_DIR, intra_op_threads=1) as att:
        det = Detector.from_dir(MODEL, intra_op_threads=1, attribution=att)
        python = {str(v.source): v for v in det.predict([str(q) for q in queries])}
    new, copy = (python[str(q)] for q in queries)
    # What the evidence says, so that agreeing on it means something.
    assert new.evidence["artists"][0]["artist"] == "Ink Person" and new.evidence["artists"][0]["passes"] is True
    assert [a["artist"] for a in new.evidence["artists"]] == ["Ink Person", "Flat"]
    assert new.evidence["attributed_to"] == "Ink Person"
    assert new.evidence["copy_of"] is None
    assert copy.evidence["copy_of"]["artist"] == "Ink Person"
    assert copy.evidence["copy_of"]["source"] == str(enrolled["copied"])

    out = tmp_path / "rows.jsonl"
    r = CliRunner().invoke(app, ["scan", *map(str, queries), "--format", "jsonl", "-o", str(out),
                                 "--model", str(MODEL), "--registry", str(db), "--encoder", str(ENCODER_DIR)])
    assert r.exit_code in (exits.EXIT_OK, exits.EXIT_FLAGGED), r.output
    rows = {row["source"]: row for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    runner = CliRunner()
    key, _ = KeyStore(tmp_path / "keys.sqlite3").create("registry admin", scope="admin")
    settings = Settings(model_dir=MODEL, keys_db=tmp_path / "keys.sqlite3", registry=db,
                        style_encoder_dir=ENCODER_DIR, intra_op_threads=1, decode_workers=2)
    with TestClient(create_app(settings)) as client:
        for q in queries:
            v = python[str(q)]
            want = _evidence(v.evidence)
            # scan: the row's attribution columns are the verdict's evidence, and its verdict the same
            row = rows[str(q)]
            assert list(row) == list(scan_lib.ATTRIBUTED_COLUMNS)
            _same({c: row[c] for c in scan_lib.ATTRIBUTION_COLUMNS}, scan_lib.attribution_cells(v), "scan row")
            assert row["label"] == v.label and row["score"] == pytest.approx(v.score, abs=1e-6)
            # check --json
            r = runner.invoke(app, ["check", str(q), "--json", "--model", str(MODEL), "--registry", str(db),
                                    "--encoder", str(ENCODER_DIR)])
            assert r.exit_code in (exits.EXIT_OK, exits.EXIT_FLAGGED), r.output
            _same(_evidence(json.loads(r.stdout)), want, f"check {q.name}")
            # HTTP, with a key that may see everything
            body = client.post("/v1/detect", files={"file": (q.name, q.read_bytes())},
                               headers={"X-API-Key": key}).json()
            _same(_evidence(body["evidence"]), want, f"http {q.name}")
            assert body["label"] == v.label and body["score"] == pytest.approx(v.score, abs=1e-6)


def test_a_batch_with_errors_keeps_each_image_its_own_evidence(enrolled, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    queries = [str(q) for q in enrolled["queries"]]
    with Attribution.open(enrolled["db"], ENCODER_DIR, intra_op_threads=1) as att:
        det = Detector.from_dir(MODEL, intra_op_threads=1, attribution=att)
        one_by_one = [det.predict(q)[0] for q in queries]
        mixed = det.predict([queries[1], str(broken), queries[0]], batch_size=3)
        streamed = list(det.stream([queries[1], str(broken), queries[0]], batch_size=2, workers=2))
    for verdicts in (mixed, streamed):
        assert verdicts[1].error_code == "corrupt" and "artists" not in verdicts[1].evidence
        _same(_evidence(verdicts[0].evidence), _evidence(one_by_one[1].evidence))
        _same(_evidence(verdicts[2].evidence), _evidence(one_by_one[0].evidence))


def test_nobody_enrolled_means_no_attribution_evidence(tmp_path, encoder, portfolios):
    db = tmp_path / "empty.sqlite3"
    query = sorted(portfolios["ink"].iterdir())[0]
    with Attribution.open(db, ENCODER_DIR, intra_op_threads=1) as att:
        assert not att.active()
        v = Detector.from_dir(MODEL, intra_op_threads=1, attribution=att).predict(str(query))[0]
    assert "artists" not in v.evidence and "copy_of" not in v.evidence
    assert set(scan_lib.attribution_cells(v).values()) == {None}
    with pytest.raises(RegistryError):  # an unknown artist to compare with is refused up front
        Attribution(StyleEncoder.from_dir(ENCODER_DIR), Registry.open(db), artist="Nobody")


def test_a_scan_with_attribution_decodes_each_image_once(enrolled, tmp_path, monkeypatch):
    decodes = []
    real = decode_module._decode_stream

    def counting(*args, **kwargs):
        decodes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_module, "_decode_stream", counting)
    out = tmp_path / "rows.csv"
    code = scan_cli.run([str(q) for q in enrolled["queries"]], output=out, model=MODEL, registry=str(enrolled["db"]),
                        encoder=ENCODER_DIR, workers=2, stderr=Console(stderr=True, quiet=True))
    monkeypatch.undo()
    assert code in (exits.EXIT_OK, exits.EXIT_FLAGGED)
    assert len(decodes) == len(enrolled["queries"])
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == scan_lib.ATTRIBUTED_COLUMNS
    assert [r["closest_artist"] for r in rows] == ["Ink Person", "Ink Person"]
    assert rows[0]["artist_match"] == "true" and rows[0]["copy_of_artist"] == ""
    assert (rows[1]["copy_of_artist"], rows[1]["copy_of_work"]) == ("Ink Person", str(enrolled["copied"]))


def test_resume_across_scans_with_and_without_attribution(enrolled, tmp_path):
    new, copy = (str(q) for q in enrolled["queries"])
    db = str(enrolled["db"])

    def run(sources, out, **kwargs):
        err = Console(stderr=True, record=True, width=300)
        code = scan_cli.run(sources, output=out, model=MODEL, encoder=ENCODER_DIR, workers=0, stderr=err, **kwargs)
        return code, err.export_text()

    # A CSV written without attribution, resumed with it: its columns are kept, and the warning says so.
    plain = tmp_path / "plain.csv"
    assert run([new], plain)[0] in (exits.EXIT_OK, exits.EXIT_FLAGGED)
    before = plain.read_text(encoding="utf-8")
    code, text = run([new, copy], plain, resume=True, registry=db)
    assert code in (exits.EXIT_OK, exits.EXIT_FLAGGED), text
    assert "written without attribution" in text and "skipped 1 already in" in text
    assert plain.read_text(encoding="utf-8").startswith(before)
    with open(plain, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == scan_lib.COLUMNS and all(None not in r for r in rows) and len(rows) == 2

    # A CSV written with attribution resumes with it; without it, the scan refuses (empty cells would
    # read as "no artist").
    attributed = tmp_path / "attributed.csv"
    run([new], attributed, registry=db)
    code, text = run([new, copy], attributed, resume=True)
    assert code == exits.EXIT_USAGE and "written with attribution" in text
    code, text = run([new, copy], attributed, resume=True, registry=db)
    assert code in (exits.EXIT_OK, exits.EXIT_FLAGGED) and "warning" not in text, text
    with open(attributed, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == scan_lib.ATTRIBUTED_COLUMNS
    assert [r["copy_of_artist"] for r in rows] == ["", "Ink Person"]

    # JSONL rows name their keys: an earlier row without attribution stays as it was.
    jsonl = tmp_path / "rows.jsonl"
    run([new], jsonl)
    old = jsonl.read_text(encoding="utf-8")
    run([new, copy], jsonl, resume=True, registry=db)
    first, second = map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())
    assert jsonl.read_text(encoding="utf-8").startswith(old) and list(first) == list(scan_lib.COLUMNS)
    assert list(second) == list(scan_lib.ATTRIBUTED_COLUMNS) and second["copy_of_artist"] == "Ink Person"


def test_scan_without_attribution_is_unchanged_and_a_bad_registry_is_a_usage_error(enrolled, tmp_path):
    query = str(enrolled["queries"][0])
    r = CliRunner().invoke(app, ["scan", query, "--format", "jsonl", "--model", str(MODEL)])
    assert list(json.loads(r.stdout.splitlines()[0])) == list(scan_lib.COLUMNS)
    not_a_db = tmp_path / "notes.sqlite3"
    not_a_db.write_text("not a database")
    r = CliRunner().invoke(app, ["scan", query, "--model", str(MODEL), "--registry", str(not_a_db)])
    assert r.exit_code == exits.EXIT_USAGE and "cannot open the registry" in r.stderr
    r = CliRunner().invoke(app, ["scan", query, "--model", str(MODEL), "--registry", str(enrolled["db"]),
                                 "--encoder", str(tmp_path)])
    assert r.exit_code == exits.EXIT_USAGE and "cannot load the style encoder" in r.stderr
    table = Console(record=True, width=240)
    err = Console(stderr=True, record=True, width=240)
    code = scan_cli.run([query], model=MODEL, registry=str(enrolled["db"]), encoder=ENCODER_DIR, stdout=table,
                        stderr=err)
    assert code in (exits.EXIT_OK, exits.EXIT_FLAGGED)
    text = table.export_text()
    assert "closest artist" in text and "copy of" in text
    with Attribution.open(enrolled["db"], ENCODER_DIR) as att:
        v = Detector.from_dir(MODEL, attribution=att).predict(query)[0]
    similarity = scan_lib.attribution_cells(v)["artist_similarity"]
    assert f"Ink Person {similarity:.3f} match" in text
    assert "attribution: registry" in err.export_text()


def test_an_image_no_enrolled_style_claims_is_attributed_to_no_enrolled_artist(tmp_path, encoder, portfolios):
    """The abstain: only "Ink Person" is enrolled and the query is a "pastel" work. Every door says
    it is attributed to no enrolled artist, and check says so in words, with what a match claims."""
    db = tmp_path / "registry.sqlite3"
    with Registry.open(db, aggregate=encoder.aggregate) as reg:
        reg.enrol("Ink Person", sorted(portfolios["ink"].iterdir()), encoder)
    query = sorted(portfolios["pastel"].iterdir())[0]
    with Attribution.open(db, ENCODER_DIR, intra_op_threads=1) as att:
        [found] = att.attribute([Image.open(query).convert("RGB")])
        assert found.artists[0].artist == "Ink Person"
        assert found.artists[0].similarity < att.threshold and found.artists[0].passes is False
        assert found.attributed_to is None and found.to_dict()["attributed_to"] is None
        det = Detector.from_dir(MODEL, intra_op_threads=1, attribution=att)
        assert det.predict(str(query))[0].evidence["attributed_to"] is None
    args = ["check", str(query), "--model", str(MODEL), "--registry", str(db), "--encoder", str(ENCODER_DIR)]
    r = CliRunner().invoke(app, [*args, "--json"])
    body = json.loads(r.stdout)
    assert body["attributed_to"] is None and body["artists"][0]["passes"] is False
    assert body["false_attribution"] == encoder.false_attribution and 0 < body["false_attribution"]["rate"] <= 0.05
    r = CliRunner().invoke(app, args)
    assert "attributed to: no enrolled artist" in r.output
    assert f"{100 * encoder.false_attribution['rate']:.1f}% of works by authors who are not" in r.output


def test_an_enrolled_file_is_found_as_itself_even_when_its_pixels_say_nothing(tmp_path, encoder, portfolios):
    """A white drawing on a transparent background is blank once put on white: no pixel test can call
    anything a copy of it. Its own file is still that enrolled work (stage 0: the same bytes), through
    the engine from a path and from bytes; a re-encoded copy of it is nobody's (there is nothing left
    to recognise), and an ordinary work's file is found as itself at distance 0."""
    ghost = np.zeros((96, 96, 4), np.uint8)
    ghost[20:76, 20:76] = (255, 255, 255, 255)  # white square, transparent around it
    ghost_path = tmp_path / "ghost.png"
    Image.fromarray(ghost, "RGBA").save(ghost_path)
    ink = sorted(portfolios["ink"].iterdir())
    db = tmp_path / "registry.sqlite3"
    with Registry.open(db, aggregate=encoder.aggregate) as reg:
        reg.enrol("Ghost Painter", [ghost_path], encoder)
        reg.enrol("Ink Person", ink[:4], encoder)
        ids = {w["source"]: w["id"] for a in ("Ghost Painter", "Ink Person") for w in reg.works(a)}
    reposted = tmp_path / "ghost.jpg"
    Image.open(ghost_path).convert("RGBA").convert("RGB").save(reposted, quality=75)
    with Attribution.open(db, ENCODER_DIR, intra_op_threads=1) as att:
        det = Detector.from_dir(MODEL, intra_op_threads=1, attribution=att)
        by_path, by_bytes, jpeg, ink_file = det.predict([str(ghost_path), ghost_path.read_bytes(), str(reposted),
                                                         str(ink[1])])
    for v in (by_path, by_bytes):
        assert v.evidence["copy_of"]["work_id"] == ids[str(ghost_path)]
        assert v.evidence["copy_of"]["artist"] == "Ghost Painter" and v.evidence["copy_of"]["distance"] == 0.0
    assert jpeg.evidence["copy_of"] is None
    assert ink_file.evidence["copy_of"]["work_id"] == ids[str(ink[1])]
    assert ink_file.evidence["copy_of"]["distance"] == 0.0 and ink_file.evidence["copy_of"]["hash_bits"] == 0
