"""``mimicry scan --engine ray`` on a local 2-CPU Ray cluster: the local engine's rows, every output
format, URIs through pyarrow.fs, resume, usage errors and the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rich.console import Console
from typer.testing import CliRunner

ray = pytest.importorskip("ray")  # the scale extra; installed in the project's venv

from mimicry import exits, scan_cli  # noqa: E402
from mimicry.detector import scan as scan_lib  # noqa: E402
from mimicry.detector import verdict as verdict_lib  # noqa: E402
from mimicry import ray_scan  # noqa: E402
from mimicry.cli import app  # noqa: E402
from mimicry.detector.provenance import DECLARED_AI  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "demo-clipart"  # its labels of the demo examples are known
EXAMPLES = ROOT / "examples"
BAD = {"truncated.png": "corrupt", "notes.png": "unsupported_format", "zero.jpg": "empty"}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for this module, as the scan would start one, and one GPU in
    name only (a logical resource) to reach the GPU actors' checks."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Bundled examples (two human, two mimicry), one declared AI-made in its metadata, a 1-MP
    JPEG, three bad files and a subfolder."""
    d = tmp_path_factory.mktemp("scan")
    for name in ("real_00.png", "real_01.png", "mimicry_00.png", "mimicry_01.png"):
        shutil.copy(EXAMPLES / name, d / name)
    # Large enough that both engines take the reduced-DCT (draft) JPEG decode path.
    Image.open(EXAMPLES / "mimicry_02.png").convert("RGB").resize((1024, 1024)).save(d / "big.jpg", quality=90)
    # A human work whose PNG says an image generator made it: both engines must raise its label.
    declared = PngInfo()
    declared.add_text("parameters", "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 128x128")
    Image.open(EXAMPLES / "real_04.png").save(d / "declared.png", pnginfo=declared)
    png = (EXAMPLES / "real_02.png").read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "notes.png").write_text("not a picture\n")
    (d / "zero.jpg").write_bytes(b"")
    (d / "readme.txt").write_text("no image suffix: never scanned")
    (d / "sub").mkdir()
    shutil.copy(EXAMPLES / "real_03.png", d / "sub" / "deep.png")
    return d


@pytest.fixture(scope="module")
def local_rows(folder, tmp_path_factory) -> dict[str, dict]:
    """The local engine's rows for ``folder``, keyed by source."""
    out = tmp_path_factory.mktemp("local") / "rows.jsonl"
    code = scan_cli.run([str(folder)], output=out, model=MODEL, stderr=_quiet())
    assert code == exits.EXIT_FLAGGED
    return _by_source(_jsonl(out))


def _quiet() -> Console:
    return Console(stderr=True, quiet=True)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _by_source(rows: list[dict]) -> dict[str, dict]:
    by = {r["source"]: r for r in rows}
    assert len(by) == len(rows), "a source appears twice"
    return by


def _assert_same_rows(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert got.keys() == want.keys()
    for source, row in want.items():
        other = got[source]
        assert list(other) == list(scan_lib.COLUMNS)
        if row["score"] is None:
            assert other == row
        else:
            assert other["score"] == pytest.approx(row["score"], abs=1e-6)
            assert {**other, "score": None} == {**row, "score": None}


# ----------------------------------------------------------------------------- inputs (no Ray)


def test_uri_listing_follows_the_local_rules(folder, tmp_path):
    local = [Path(p).relative_to(folder) for p in scan_lib.iter_inputs([str(folder)])]
    uri = folder.as_uri()
    listed = list(ray_scan.iter_sources([uri]))
    assert all(s.startswith(uri + "/") for s in listed)
    assert [Path(s[len(uri) + 1:]) for s in listed] == local  # same suffix rules, no subfolder
    deep = list(ray_scan.iter_sources([uri], recursive=True))
    assert uri + "/sub/deep.png" in deep and len(deep) == len(listed) + 1
    named = [uri + "/readme.txt", uri + "/missing.png"]
    assert list(ray_scan.iter_sources(named)) == named  # named files are always tried
    ignored = []
    list(ray_scan.iter_sources([uri], ignored=ignored.append))
    assert ignored == [uri + "/readme.txt"]  # counted for the summary, as the local listing does
    local_ignored = []
    list(ray_scan.iter_sources([str(folder)], ignored=local_ignored.append))
    assert local_ignored == [str(folder / "readme.txt")]
    warnings = []
    assert list(ray_scan.iter_sources([(folder / "sub").as_uri()], warn=warnings.append)) == [uri + "/sub/deep.png"]
    assert list(ray_scan.iter_sources([tmp_path.as_uri()], warn=warnings.append)) == []
    assert warnings == [f"no image files in {tmp_path.as_uri()} (use -r for subfolders)"]


def test_usage_errors_exit_2_before_starting_ray(folder, tmp_path):
    err = Console(stderr=True, record=True, width=200)
    assert ray_scan.run([str(folder)], fmt="parquet", model=MODEL, stderr=err) == exits.EXIT_USAGE
    assert ray_scan.run([str(folder)], output=tmp_path / "x.parquet", resume=True, model=MODEL,
                        stderr=err) == exits.EXIT_USAGE
    assert ray_scan.run([str(tmp_path)], model=MODEL, stderr=err) == exits.EXIT_USAGE
    assert ray_scan.run(["nosuchscheme://x/y.png"], model=MODEL, stderr=err) == exits.EXIT_USAGE
    assert ray_scan.run([str(folder)], model=tmp_path, stderr=err) == exits.EXIT_USAGE
    for name in ("kept.parquet", "kept.jsonl"):
        (tmp_path / name).write_bytes(b"earlier results")
        assert ray_scan.run([str(folder)], output=tmp_path / name, model=MODEL, stderr=err) == exits.EXIT_USAGE
        assert (tmp_path / name).read_bytes() == b"earlier results"
    text = err.export_text()
    for expected in ("needs -o/--output FILE.parquet", "cannot resume into a Parquet file", "no input files",
                     "nosuchscheme://x/y.png", "cannot load model", "kept.parquet already exists",
                     "kept.jsonl already exists; give --resume"):
        assert expected in text
    assert not ray.is_initialized()


# ----------------------------------------------------------------------------- on the cluster


def test_ray_rows_equal_local_rows_and_errors_are_rows(cluster, folder, local_rows, tmp_path):
    out = tmp_path / "ray.jsonl"
    code = ray_scan.run([str(folder)], output=out, model=MODEL, stderr=_quiet(),
                        options=ray_scan.RayOptions(actors=2, batch_size=4, sources_per_block=2))  # 5 blocks
    assert code == exits.EXIT_FLAGGED
    rows = _by_source(_jsonl(out))
    _assert_same_rows(rows, local_rows)
    for name, code in BAD.items():
        row = rows[str(folder / name)]
        assert row["error_code"] == code and row["score"] is None and row["label"] is None and row["error"]
    labels = {Path(s).name: r["label"] for s, r in rows.items()}
    assert labels["real_00.png"] == "human" and labels["mimicry_00.png"] == "ai-mimicry"
    assert labels["declared.png"] == "ai-mimicry"
    declared = rows[str(folder / "declared.png")]
    assert declared["signals"] == ["png.a1111_parameters"]  # the same evidence columns as the local engine's
    assert declared["label_reason"] in (DECLARED_AI, verdict_lib.SCORE_AT_OR_ABOVE_THRESHOLD)
    assert all(r["label_reason"] is None and r["signals"] is None for r in rows.values() if r["error_code"])


def test_parquet_from_a_uri_has_the_same_rows(cluster, folder, local_rows, tmp_path):
    out = tmp_path / "rows.parquet"
    missing = folder.as_uri() + "/missing.png"
    code = ray_scan.run([folder.as_uri(), missing], output=out, model=MODEL, stderr=_quiet())
    assert code == exits.EXIT_FLAGGED
    table = pq.read_table(out)
    assert table.schema.names == list(scan_lib.COLUMNS)
    rows = _by_source(table.to_pylist())
    assert rows.pop(missing)["error_code"] == "not_found"
    prefix = folder.as_uri()
    as_local = {str(folder) + s[len(prefix):]: {**r, "source": str(folder) + s[len(prefix):]}
                for s, r in rows.items()}
    _assert_same_rows(as_local, local_rows)


def test_resume_scans_only_the_rest(cluster, folder, local_rows, tmp_path):
    out = tmp_path / "rows.jsonl"
    done = sorted(local_rows)[:5]
    out.write_text("".join(json.dumps(local_rows[s]) + "\n" for s in done) + '{"source": "cut off', encoding="utf-8")
    code = ray_scan.run([str(folder)], output=out, resume=True, model=MODEL, stderr=_quiet())
    assert code == exits.EXIT_FLAGGED
    rows = _jsonl(out)
    assert [r["source"] for r in rows[:5]] == done
    _assert_same_rows(_by_source(rows), local_rows)


def test_resume_into_an_older_csv_keeps_its_columns_and_the_summary_counts_files_left_out(
        cluster, folder, local_rows, tmp_path):
    out = tmp_path / "old.csv"
    first = local_rows[str(folder / "real_00.png")]
    with open(out, "w", newline="", encoding="utf-8") as f:  # as a version before label_reason and signals wrote it
        writer = csv.DictWriter(f, scan_lib.LEGACY_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow({k: "" if v is None else v for k, v in first.items()})
    before = out.read_text(encoding="utf-8")
    err = Console(stderr=True, record=True, width=60)
    code = ray_scan.run([str(folder)], output=out, resume=True, model=MODEL, stderr=err)
    assert code in (exits.EXIT_FLAGGED, exits.EXIT_ERRORS)  # the folder holds bad files
    text = err.export_text()
    assert "written by an older version without label_reason, signals" in text
    assert "not scanned: 1 file in the folders without an image suffix (1 .txt)" in text
    assert out.read_text(encoding="utf-8").startswith(before)
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == scan_lib.LEGACY_COLUMNS and all(None not in r for r in rows)
    assert sorted(r["source"] for r in rows) == sorted(local_rows)


def test_cli_engine_ray_with_exit_codes(cluster, folder, local_rows, tmp_path):
    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(app, ["scan", "--engine", "ray", str(folder / "real_00.png"),
                                      str(folder / "notes.png"), "-o", str(out), "--model", str(MODEL)])
    assert result.exit_code == exits.EXIT_ERRORS, result.output  # no flag, one error
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(scan_lib.COLUMNS) and len(lines) == 3
    result = CliRunner().invoke(app, ["scan", "--engine", "ray", str(folder / "real_00.png"), "--format", "jsonl",
                                      "--model", str(MODEL)])
    assert result.exit_code == exits.EXIT_OK, result.output
    row = json.loads(result.stdout.splitlines()[0])
    _assert_same_rows({row["source"]: row}, {row["source"]: local_rows[str(folder / "real_00.png")]})


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                    reason="this onnxruntime can run GPU actors")
def test_gpu_actors_without_cuda_onnxruntime_fail_clearly(cluster, folder, tmp_path):
    err = Console(stderr=True, record=True, width=400)
    opts = ray_scan.RayOptions(gpus_per_actor=1)
    assert ray_scan.run([str(folder)], output=tmp_path / "x.jsonl", model=MODEL, options=opts,
                        stderr=err) == exits.EXIT_USAGE
    assert "GPU actors need onnxruntime with CUDAExecutionProvider" in err.export_text()
    opts = ray_scan.RayOptions(gpus_per_actor=2)
    assert ray_scan.run([str(folder)], model=MODEL, options=opts, stderr=err) == exits.EXIT_USAGE
    assert "--gpus-per-actor 2 but the Ray cluster has 1 GPUs" in err.export_text()


def test_ray_rows_with_attribution_equal_local_rows(cluster, folder, tmp_path):
    """With --registry both engines give every row the same attribution columns, from one component."""
    from mimicry.detector.registry import Registry
    from mimicry.detector.style import StyleEncoder

    encoder_dir = ROOT / "models" / "style-encoder"
    encoder = StyleEncoder.from_dir(encoder_dir, intra_op_threads=1)
    db = tmp_path / "registry.sqlite3"
    with Registry.open(db, aggregate=encoder.aggregate) as reg:
        reg.enrol("Ann", [EXAMPLES / "real_00.png", EXAMPLES / "real_01.png"], encoder)
        reg.enrol("Bo", [EXAMPLES / "mimicry_00.png"], encoder)
    local_out, ray_out, parquet_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl", tmp_path / "ray.parquet"
    attribution = {"registry": str(db), "encoder": encoder_dir}
    assert scan_cli.run([str(folder)], output=local_out, model=MODEL, stderr=_quiet(), **attribution) \
        == exits.EXIT_FLAGGED
    opts = ray_scan.RayOptions(actors=2, batch_size=4, sources_per_block=2)
    assert ray_scan.run([str(folder)], output=ray_out, model=MODEL, stderr=_quiet(), options=opts,
                        **attribution) == exits.EXIT_FLAGGED
    local, rows = _by_source(_jsonl(local_out)), _by_source(_jsonl(ray_out))
    assert rows.keys() == local.keys()
    for source, want in local.items():
        got = rows[source]
        assert list(got) == list(want) == list(scan_lib.ATTRIBUTED_COLUMNS)
        floats = ("score", "artist_similarity")
        for c in floats:
            assert got[c] == pytest.approx(want[c], abs=1e-5)
        assert {**got, **dict.fromkeys(floats)} == {**want, **dict.fromkeys(floats)}
    copied = rows[str(folder / "real_00.png")]
    assert (copied["closest_artist"], copied["copy_of_artist"]) == ("Ann", "Ann")
    assert copied["copy_of_work"] == str(EXAMPLES / "real_00.png")
    assert all(r["closest_artist"] is None for r in rows.values() if r["error_code"])
    assert ray_scan.run([str(folder / "real_00.png")], output=parquet_out, model=MODEL, stderr=_quiet(),
                        **attribution) == exits.EXIT_OK
    [row] = pq.read_table(parquet_out).to_pylist()
    assert list(row) == list(scan_lib.ATTRIBUTED_COLUMNS) and row["artist_match"] is True
