"""``mimicry scan``: inputs, every output format parsed back, resume, exit codes, the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from mimicry.detector import scan as scan_lib
from detector_fixtures import encode, png_bomb_header, solid
from mimicry.cli import app

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
    assert result.exit_code == scan_lib.EXIT_INTERRUPTED and "--resume" in result.stderr
    assert len(read_jsonl(out)) == 3
    monkeypatch.setattr(scan_lib.JsonlSink, "write", real_write)
    assert invoke(folder, "--model", model_dir, "-o", out, "--resume").exit_code == 1
    sources = [r["source"] for r in read_jsonl(out)]
    assert len(sources) == len(set(sources)) == len(GOOD) + len(BAD)


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
    for line in ("0    all files scanned", "1    at least one ai-mimicry", "2    usage error", "3    some files had"):
        assert line in result.stdout


# ----------------------------------------------------------------------------- library level


def test_run_with_a_progress_bar_on_a_terminal(folder, model_dir, tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(scan_lib.PROGRESS_MIN_FILES + 2):
        (many / f"{i:02d}.png").write_bytes(encode(solid("black", (8, 8)), "PNG"))
    err = Console(file=io.StringIO(), force_terminal=True, width=100)
    out = Console(file=io.StringIO(), width=100)
    code = scan_lib.run([str(many)], model=model_dir, output=tmp_path / "r.csv", stdout=out, stderr=err,
                        workers=1, batch_size=4)
    assert code == 0 and len(read_csv(tmp_path / "r.csv")) == scan_lib.PROGRESS_MIN_FILES + 2
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
    assert summary.labels["human"] == 1 and summary.errors["empty"] == 1 and summary.exit_code == 3
