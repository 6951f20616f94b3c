"""``mimicry scan``: inputs, every output format parsed back, resume, exit codes, the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rich.console import Console
from typer.testing import CliRunner

from mimicry import exits, scan_cli
from mimicry.detector import scan as scan_lib
from mimicry.detector import verdict as verdict_lib
from detector_fixtures import encode, png_bomb_header, solid
from mimicry.cli import app
from mimicry.detector.provenance import DECLARED_AI

runner = CliRunner()


@pytest.fixture
def folder(tmp_path) -> Path:
    """Good images (one of them white, so flagged) and every kind of bad file."""
    d = tmp_path / "imgs"
    d.mkdir()
    (d / "white.png").write_bytes(encode(solid("white"), "PNG"))
    (d / "black.jpg").write_bytes(encode(solid("black"), "JPEG"))
    (d / "grey.webp").write_bytes(encode(solid((128, 128, 128)), "WEBP", lossless=True))
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    png = encode(noisy, "PNG")
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "zero.png").write_bytes(b"")
    (d / "notes.jpg").write_text("not a picture\n")
    (d / "bomb.png").write_bytes(png_bomb_header(20000, 20000))
    (d / "readme.txt").write_text("not scanned: no image suffix")
    (d / "sub").mkdir()
    (d / "sub" / "deep.png").write_bytes(encode(solid("black"), "PNG"))
    return d


GOOD = {"white.png": "ai-mimicry", "black.jpg": "human", "grey.webp": "uncertain"}
BAD = {"truncated.png": "corrupt", "zero.png": "empty", "notes.jpg": "unsupported_format",
       "bomb.png": "too_many_pixels"}


def invoke(*args):
    return runner.invoke(app, ["scan", *map(str, args)])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == scan_lib.COLUMNS
        return list(reader)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- inputs


def test_inputs_top_level_recursive_glob_and_explicit(folder, tmp_path):
    names = lambda paths: [Path(p).name for p in paths]  # noqa: E731
    top = names(scan_lib.iter_inputs([str(folder)]))
    assert top == sorted(GOOD.keys() | BAD.keys())  # readme.txt and sub/ left out
    assert "deep.png" in names(scan_lib.iter_inputs([str(folder)], recursive=True))
    assert names(scan_lib.iter_inputs([str(folder / "*.jpg")])) == ["black.jpg", "notes.jpg"]
    assert names(scan_lib.iter_inputs([str(folder / "**" / "*.png")], recursive=True)) == [
        "bomb.png", "deep.png", "truncated.png", "white.png", "zero.png"]
    explicit = [str(folder / "readme.txt"), str(tmp_path / "missing.png")]
    assert list(scan_lib.iter_inputs(explicit)) == explicit  # named files are always tried
    warnings = []
    assert list(scan_lib.iter_inputs([str(folder / "sub" / "*.gif"), str(tmp_path)], warn=warnings.append)) == []
    assert len(warnings) == 2 and "no files match" in warnings[0] and "use -r" in warnings[1]


def test_output_format_from_suffix_or_flag():
    assert scan_lib.output_format(None, None) == "table"
    assert scan_lib.output_format(Path("r.CSV"), None) == "csv"
    assert scan_lib.output_format(Path("r.jsonl"), None) == "jsonl"
    assert scan_lib.output_format(Path("r.txt"), "csv") == "csv"
    with pytest.raises(scan_lib.ScanUsageError, match="cannot tell the format"):
        scan_lib.output_format(Path("r.txt"), None)
    with pytest.raises(scan_lib.ScanUsageError, match="terminal"):
        scan_lib.output_format(Path("r.csv"), "table")


# ----------------------------------------------------------------------------- outputs


def test_csv_output_has_verdicts_and_error_rows(folder, model_dir, tmp_path):
    out = tmp_path / "results.csv"
    result = invoke(folder, "--model", model_dir, "-o", out, "--workers", "2", "--batch-size", "3")
    assert result.exit_code == 1, result.stderr  # white.png is flagged
    rows = read_csv(out)
    by_name = {Path(r["source"]).name: r for r in rows}
    assert len(rows) == len(by_name) == len(GOOD) + len(BAD)
    for name, label in GOOD.items():
        r = by_name[name]
        assert r["label"] == label and 0 <= float(r["score"]) <= 1 and float(r["threshold"]) == 0.9
        assert r["model"] == "tiny-test" and r["model_version"] == "0.0.1" and r["error_code"] == ""
    for name, code in BAD.items():
        r = by_name[name]
        assert r["error_code"] == code and r["error"] and r["label"] == "" and r["score"] == ""
    assert "1 ai-mimicry" in result.stderr and "4 errors" in result.stderr and "images/s" in result.stderr
    assert "trained on: nothing" in result.stderr


def test_jsonl_output_parses_back(folder, model_dir, tmp_path):
    out = tmp_path / "results.jsonl"
    assert invoke(folder, "-r", "--model", model_dir, "-o", out).exit_code == 1
    rows = read_jsonl(out)
    assert len(rows) == len(GOOD) + len(BAD) + 1  # sub/deep.png with -r
    assert all(tuple(r) == scan_lib.COLUMNS for r in rows)
    white = next(r for r in rows if r["source"].endswith("white.png"))
    assert white["label"] == "ai-mimicry" and isinstance(white["score"], float) and white["error"] is None


def test_csv_and_jsonl_to_stdout_and_the_table(folder, model_dir):
    result = invoke(folder / "black.jpg", folder / "zero.png", "--model", model_dir, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["label"] for r in rows] == ["human", ""] and rows[1]["error_code"] == "empty"
    result = invoke(folder / "black.jpg", "--model", model_dir, "--format", "jsonl")
    assert json.loads(result.stdout)["label"] == "human"
    result = invoke(folder, "--model", model_dir)
    assert result.exit_code == 1
    for word in ("ai-mimicry", "human", "uncertain", "too_many_pixels", "white.png", "model tiny-test 0.0.1"):
        assert word in result.stdout


# ----------------------------------------------------------------------------- resume


def test_resume_skips_done_rows_and_recovers_a_partial_last_line(folder, model_dir, tmp_path):
    out = tmp_path / "results.csv"
    assert invoke(folder / "black.jpg", folder / "grey.webp", "--model", model_dir, "-o", out).exit_code == 0
    done = read_csv(out)
    # A killed run leaves half a row without its newline.
    with open(out, "a", encoding="utf-8") as f:
        f.write(f"{folder / 'white.png'},ai-mi")
    result = invoke(folder, "--model", model_dir, "-o", out, "--resume")
    assert result.exit_code == 1, result.stderr
    assert "incomplete last row" in result.stderr and "skipped 2 already in" in result.stderr
    rows = read_csv(out)
    sources = [r["source"] for r in rows]
    assert len(sources) == len(set(sources)) == len(GOOD) + len(BAD)  # no duplicates, nothing lost
    assert rows[:2] == done  # the earlier rows are kept as they were
    assert next(r for r in rows if r["source"].endswith("white.png"))["label"] == "ai-mimicry"
    # Resuming a finished scan scans nothing and keeps the verdict of the whole file.
    again = invoke(folder, "--model", model_dir, "-o", out, "--resume")
    assert again.exit_code == 1 and read_csv(out) == rows and "scanned 0 images" in again.stderr


def test_resume_jsonl_with_partial_line(folder, model_dir, tmp_path):
    out = tmp_path / "results.jsonl"
    invoke(folder / "black.jpg", "--model", model_dir, "-o", out)
    with open(out, "a") as f:
        f.write('{"source": "' + str(folder / "grey.webp"))
    assert invoke(folder / "black.jpg", folder / "grey.webp", "--model", model_dir, "-o", out,
                  "--resume").exit_code == 0
    assert [Path(r["source"]).name for r in read_jsonl(out)] == ["black.jpg", "grey.webp"]


def test_interrupted_scan_keeps_its_rows_and_resumes(folder, model_dir, tmp_path, monkeypatch):
    out = tmp_path / "results.jsonl"
    real_write = scan_lib.JsonlSink.write
    calls = []

    def write_then_die(self, row):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(row)
        real_write(self, row)

    monkeypatch.setattr(scan_lib.JsonlSink, "write", write_then_die)
    result = invoke(folder, "--model", model_dir, "-o", out, "--workers", "1", "--batch-size", "2")
    assert result.exit_code == exits.EXIT_INTERRUPTED and "--resume" in result.stderr
    assert len(read_jsonl(out)) == 3
    monkeypatch.setattr(scan_lib.JsonlSink, "write", real_write)
    assert invoke(folder, "--model", model_dir, "-o", out, "--resume").exit_code == 1
    sources = [r["source"] for r in read_jsonl(out)]
    assert len(sources) == len(set(sources)) == len(GOOD) + len(BAD)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_file_name_that_is_not_utf8_is_one_row_written_as_its_bytes_and_resumed(folder, model_dir, tmp_path,
                                                                                    suffix):
    # Linux allows any bytes in a name; Python hands such a name over with surrogates, which strict UTF-8
    # cannot write. The row names the file by its own bytes, the files after it are scanned, and resume
    # recognises the name again.
    odd = folder / "caf\udce9.jpg"  # the bytes b"caf\xe9.jpg": Latin-1, not UTF-8
    odd.write_bytes((folder / "black.jpg").read_bytes())
    out = tmp_path / f"results.{suffix}"
    result = invoke(folder, "--model", model_dir, "-o", out)
    assert result.exit_code == 1, result.stderr  # white.png (after the odd name) was scanned and flagged
    raw = out.read_bytes()
    assert b"caf\xe9.jpg" in raw and raw.count(b"\n") == len(GOOD) + len(BAD) + 1 + (suffix == "csv")
    again = invoke(folder, "--model", model_dir, "-o", out, "--resume")
    assert again.exit_code == 1 and "scanned 0 images" in again.stderr and out.read_bytes() == raw


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device whose writes fail)")
def test_a_failed_write_stops_the_scan_with_a_message_not_a_traceback_or_the_flagged_code(folder, model_dir):
    result = invoke(folder / "white.png", "--model", model_dir, "--format", "csv", "-o", "/dev/full", "--force")
    assert result.exit_code == exits.EXIT_USAGE  # not 1, which says "flagged"
    assert "cannot write /dev/full (No space left on device)" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_resume_refuses_a_file_that_is_not_a_scan(folder, model_dir, tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("name,age\nann,3\n")
    result = invoke(folder, "--model", model_dir, "-o", out, "--resume")
    assert result.exit_code == 2 and "not a scan CSV" in result.stderr
    assert out.read_text() == "name,age\nann,3\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a.png"}\nnot json\n{"source": "b.png"}\n')
    result = invoke(folder, "--model", model_dir, "-o", bad, "--resume")
    assert result.exit_code == 2 and "bad.jsonl:2" in result.stderr


# ----------------------------------------------------------------------------- exit codes


def test_exit_codes(folder, model_dir, tmp_path):
    assert invoke(folder / "black.jpg", folder / "grey.webp", "--model", model_dir).exit_code == 0
    assert invoke(folder / "white.png", "--model", model_dir).exit_code == 1
    assert invoke(folder / "white.png", folder / "zero.png", "--model", model_dir).exit_code == 1  # flag wins
    assert invoke(folder / "black.jpg", folder / "zero.png", "--model", model_dir).exit_code == 3
    assert invoke(tmp_path / "missing.png", "--model", model_dir).exit_code == 3  # a not_found row
    usage = [
        (invoke(folder, "--model", tmp_path / "no-model"), "cannot load model"),
        (invoke(tmp_path / "*.nothing", "--model", model_dir), "no input files"),
        (invoke(folder, "--model", model_dir, "--resume"), "--resume needs -o"),
        (invoke(folder, "--model", model_dir, "-o", tmp_path / "r.txt"), "cannot tell the format"),
        (invoke(folder, "--model", model_dir, "--batch-size", "0"), ""),
        (invoke("--model", model_dir), ""),
    ]
    for result, message in usage:
        assert result.exit_code == 2, result.output
        assert message in result.stderr


def test_help_documents_the_exit_codes():
    result = runner.invoke(app, ["scan", "--help"])
    assert result.exit_code == 0
    for line in ("0    all files scanned", "1    at least one ai-mimicry", "2    usage error", "3    some files had",
                 "130  interrupted"):
        assert line in result.stdout
    for word in ("--force", "label_reason", "signals"):
        assert word in result.stdout


# ----------------------------------------------------------------------------- an existing output file


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_an_existing_output_is_kept_unless_resume_or_force(folder, model_dir, tmp_path, name):
    out = tmp_path / name
    assert invoke(folder / "black.jpg", folder / "grey.webp", "--model", model_dir, "-o", out).exit_code == 0
    before = out.read_bytes()
    result = invoke(folder / "white.png", "--model", model_dir, "-o", out)
    assert result.exit_code == 2 and out.read_bytes() == before
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, however long the path
    assert f"{out} already exists" in lines[0] and "--resume" in lines[0] and "--force" in lines[0]
    both = invoke(folder / "white.png", "--model", model_dir, "-o", out, "--resume", "--force")
    assert both.exit_code == 2 and "not both" in both.stderr and out.read_bytes() == before

    assert invoke(folder / "white.png", "--model", model_dir, "-o", out, "--force").exit_code == 1
    rows = read_csv(out) if name.endswith(".csv") else read_jsonl(out)
    assert [Path(r["source"]).name for r in rows] == ["white.png"]  # replaced, not appended to


def test_an_empty_output_file_or_the_terminal_needs_no_force(folder, model_dir, tmp_path):
    empty = tmp_path / "made-by-mktemp.csv"
    empty.touch()
    assert invoke(folder / "black.jpg", "--model", model_dir, "-o", empty).exit_code == 0
    assert [r["label"] for r in read_csv(empty)] == ["human"]
    assert invoke(folder / "black.jpg", "--model", model_dir, "--format", "jsonl", "--force").exit_code == 0


# ----------------------------------------------------------------------------- files left out


def test_files_left_out_for_their_suffix_are_counted_and_shown(folder, model_dir, tmp_path):
    (folder / "sub" / "notes.md").write_text("not scanned")
    (folder / "LICENSE").write_text("not scanned")
    names = lambda paths: sorted(Path(p).name for p in paths)  # noqa: E731
    deep, top, named = [], [], []
    list(scan_lib.iter_inputs([str(folder)], recursive=True, ignored=deep.append))
    list(scan_lib.iter_inputs([str(folder)], ignored=top.append))
    list(scan_lib.iter_inputs([str(folder / "readme.txt")], ignored=named.append))
    assert names(deep) == ["LICENSE", "notes.md", "readme.txt"]
    assert names(top) == ["LICENSE", "readme.txt"]  # sub/ is not entered without -r
    assert named == []  # a file named explicitly is tried, not left out

    result = invoke(folder, "-r", "--model", model_dir, "-o", tmp_path / "r.csv")
    assert result.exit_code == 1, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("not scanned:"))
    assert line.startswith("not scanned: 3 files") and "(1 .md, 1 .txt, 1 no suffix)" in line
    assert len(read_csv(tmp_path / "r.csv")) == len(GOOD) + len(BAD) + 1  # the images, sub/deep.png too
    # Nothing left out, nothing said.
    clean = invoke(folder / "black.jpg", "--model", model_dir, "-o", tmp_path / "clean.csv")
    assert "not scanned" not in clean.stderr


def test_a_folder_of_nothing_but_other_files_says_what_it_left_out(model_dir, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.txt", "b.txt", "c.psd"):
        (docs / name).write_text("not scanned")
    result = invoke(docs, "--model", model_dir)
    assert result.exit_code == 2
    assert f"no input files in {docs} (3 files without an image suffix left out)" in result.stderr


def test_the_summary_lines_never_wrap(folder, model_dir, tmp_path):
    """A summary line is one line on any terminal, whatever width the images/s figure takes."""
    err = Console(file=io.StringIO(), width=30)
    code = scan_cli.run([str(folder)], model=model_dir, output=tmp_path / "r.csv", workers=1,
                        stdout=Console(file=io.StringIO(), width=30), stderr=err)
    assert code == 1
    lines = err.file.getvalue().splitlines()
    scanned = next(x for x in lines if x.startswith("scanned 7 images in "))
    assert "images/s): 1 human, 1 uncertain, 1 ai-mimicry, 4 errors (" in scanned
    assert any(x.startswith("not scanned: 1 file ") and x.endswith("anyway") for x in lines)
    assert any(x.startswith("model tiny-test 0.0.1, trained on: ") and x.endswith("in a test") for x in lines)


# ----------------------------------------------------------------------------- why a label, and the signals


A1111 = "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 32x32"


@pytest.fixture
def evidence_folder(tmp_path) -> Path:
    """One image per reason for a label, one with provenance signals, one error."""
    d = tmp_path / "evidence"
    d.mkdir()
    info = PngInfo()
    info.add_text("parameters", A1111)
    info.add_text("Software", "ComfyUI")
    (d / "declared.png").write_bytes(encode(solid("black"), "PNG", pnginfo=info))  # human pixels, AI metadata
    signed_white = PngInfo()
    signed_white.add_text("parameters", A1111)
    (d / "params_white.png").write_bytes(encode(solid("white"), "PNG", pnginfo=signed_white))
    (d / "white.png").write_bytes(encode(solid("white"), "PNG"))
    (d / "black.png").write_bytes(encode(solid("black"), "PNG"))
    (d / "grey.png").write_bytes(encode(solid((128, 128, 128)), "PNG"))
    (d / "zero.png").write_bytes(b"")
    return d


EVIDENCE = {  # name: label, label_reason, signals
    "declared.png": ("ai-mimicry", DECLARED_AI, ["png.a1111_parameters", "png.software"]),
    "params_white.png": ("ai-mimicry", verdict_lib.SCORE_AT_OR_ABOVE_THRESHOLD, ["png.a1111_parameters"]),
    "white.png": ("ai-mimicry", verdict_lib.SCORE_AT_OR_ABOVE_THRESHOLD, []),
    "black.png": ("human", verdict_lib.SCORE_BELOW_UNCERTAIN_BAND, []),
    "grey.png": ("uncertain", verdict_lib.SCORE_IN_UNCERTAIN_BAND, []),
    "zero.png": (None, None, None),
}


def test_jsonl_rows_say_why_and_list_the_signals(evidence_folder, model_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    assert invoke(evidence_folder, "--model", model_dir, "-o", out).exit_code == 1
    rows = read_jsonl(out)
    assert all(tuple(r) == scan_lib.COLUMNS for r in rows)
    got = {Path(r["source"]).name: (r["label"], r["label_reason"], r["signals"]) for r in rows}
    assert got == EVIDENCE
    declared = next(r for r in rows if r["source"].endswith("declared.png"))
    assert declared["score"] < declared["threshold"]  # the metadata, not the score, flagged it: the row says so


def test_csv_rows_say_why_and_join_the_signals(evidence_folder, model_dir, tmp_path):
    out = tmp_path / "r.csv"
    assert invoke(evidence_folder, "--model", model_dir, "-o", out).exit_code == 1
    got = {Path(r["source"]).name: (r["label"], r["label_reason"], r["signals"]) for r in read_csv(out)}
    assert got == {name: (label or "", why or "", scan_lib.CSV_LIST_SEPARATOR.join(signals or []))
                   for name, (label, why, signals) in EVIDENCE.items()}
    assert got["declared.png"][2] == "png.a1111_parameters;png.software"


def test_the_row_follows_the_verdict(detector, evidence_folder):
    """verdict_row is the one place a row is made (the Ray engine calls it too)."""
    sources = [str(evidence_folder / n) for n in EVIDENCE]
    for v in detector.predict(sources):
        row = scan_lib.verdict_row(v)
        assert tuple(row) == scan_lib.COLUMNS
        assert (row["label_reason"], row["signals"]) == (verdict_lib.label_reason(v), verdict_lib.signal_names(v))


# ----------------------------------------------------------------------------- resuming older files


def test_resume_into_a_csv_from_before_the_new_columns_keeps_its_columns(folder, model_dir, tmp_path):
    out = tmp_path / "old.csv"
    old = ",".join(scan_lib.LEGACY_COLUMNS) + f"\n{folder / 'black.jpg'},human,0.0025,0.9,tiny-test,0.0.1,,\n"
    out.write_text(old, encoding="utf-8")
    result = invoke(folder / "black.jpg", folder / "white.png", "--model", model_dir, "-o", out, "--resume")
    assert result.exit_code == 1, result.stderr
    assert "written by an older version without label_reason, signals" in result.stderr
    assert "skipped 1 already in" in result.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith(old)
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == scan_lib.LEGACY_COLUMNS
    assert all(None not in r for r in rows)  # no row has more cells than the header
    assert [(Path(r["source"]).name, r["label"]) for r in rows] == [("black.jpg", "human"), ("white.png", "ai-mimicry")]


def test_resume_into_jsonl_rows_without_the_new_keys(folder, model_dir, tmp_path):
    out = tmp_path / "old.jsonl"
    old = {"source": str(folder / "white.png"), "label": "ai-mimicry", "score": 0.9975, "threshold": 0.9,
           "model": "tiny-test", "model_version": "0.0.1", "error_code": None, "error": None}
    out.write_text(json.dumps(old) + "\n", encoding="utf-8")
    result = invoke(folder / "white.png", folder / "black.jpg", "--model", model_dir, "-o", out, "--resume")
    assert result.exit_code == 1, result.stderr  # the earlier row's flag counts
    assert "older version" not in result.stderr  # JSONL rows name their keys: nothing to keep in line
    rows = read_jsonl(out)
    assert rows[0] == old and tuple(rows[1]) == scan_lib.COLUMNS and len(rows) == 2
    assert rows[1]["label_reason"] == verdict_lib.SCORE_BELOW_UNCERTAIN_BAND and rows[1]["signals"] == []


# ----------------------------------------------------------------------------- library level


def test_run_with_a_progress_bar_on_a_terminal(folder, model_dir, tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(scan_cli.PROGRESS_MIN_FILES + 2):
        (many / f"{i:02d}.png").write_bytes(encode(solid("black", (40, 40)), "PNG"))
    err = Console(file=io.StringIO(), force_terminal=True, width=100)
    out = Console(file=io.StringIO(), width=100)
    code = scan_cli.run([str(many)], model=model_dir, output=tmp_path / "r.csv", stdout=out, stderr=err,
                        workers=1, batch_size=4)
    assert code == 0 and len(read_csv(tmp_path / "r.csv")) == scan_cli.PROGRESS_MIN_FILES + 2
    assert "scanned 12 images" in err.file.getvalue()


def test_scan_streams_rows_to_the_sink(folder, model_dir):
    from mimicry.detector.detector import Detector

    class ListSink:
        def __init__(self):
            self.rows = []

        def write(self, row):
            self.rows.append(row)

    sink = ListSink()
    det = Detector.from_dir(model_dir, intra_op_threads=1)
    sources = [str(folder / n) for n in ("white.png", "zero.png", "black.jpg")]
    summary = scan_lib.scan(det, iter(sources), sink, batch_size=2, workers=1, skip={sources[0]})
    assert [r["source"] for r in sink.rows] == sources[1:]
    assert (summary.found, summary.skipped, summary.scanned) == (3, 1, 2)
    assert summary.labels["human"] == 1 and summary.errors["empty"] == 1 and scan_cli.exit_code(summary) == 3


def test_an_animation_row_says_how_many_frames_its_score_is_over(model_dir, tmp_path):
    """CSV and JSONL rows carry ``frames``: the frames the score is the mean over, empty for a still."""
    d = tmp_path / "anim"
    d.mkdir()
    greys = [Image.new("RGB", (40, 40), (g,) * 3) for g in (20, 230, 60, 200, 110, 250, 0)]
    (d / "moving.gif").write_bytes(encode(greys[0], "GIF", save_all=True, append_images=greys[1:], duration=40))
    (d / "still.png").write_bytes(encode(greys[0], "PNG"))
    assert invoke(d, "--model", model_dir, "-o", tmp_path / "r.jsonl").exit_code in (0, 1)
    rows = {Path(r["source"]).name: r for r in read_jsonl(tmp_path / "r.jsonl")}
    assert rows["moving.gif"]["frames"] == 4 and rows["still.png"]["frames"] is None
    assert invoke(d, "--model", model_dir, "-o", tmp_path / "r.csv").exit_code in (0, 1)
    cells = {Path(r["source"]).name: r["frames"] for r in read_csv(tmp_path / "r.csv")}
    assert cells == {"moving.gif": "4", "still.png": ""}


def test_resume_into_a_csv_from_before_frames_keeps_its_columns(folder, model_dir, tmp_path):
    out = tmp_path / "before-frames.csv"
    old = (",".join(scan_lib.PREVIOUS_COLUMNS)
           + f"\n{folder / 'black.jpg'},human,score-below-uncertain-band,0.0025,0.9,,tiny-test,0.0.1,,\n")
    out.write_text(old, encoding="utf-8")
    result = invoke(folder / "black.jpg", folder / "white.png", "--model", model_dir, "-o", out, "--resume")
    assert result.exit_code == 1, result.stderr
    assert "written by an older version without frames" in result.stderr
    assert out.read_text(encoding="utf-8").startswith(old)
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == scan_lib.PREVIOUS_COLUMNS and all(None not in r for r in rows)
    assert [(Path(r["source"]).name, r["label"]) for r in rows] == [("black.jpg", "human"), ("white.png", "ai-mimicry")]
