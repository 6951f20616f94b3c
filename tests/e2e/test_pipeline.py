"""End to end on tiny data: dataset (DreamBooth + generation), fine-tune, export, then `mimicry scan`."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from mimicry.cli import app
from mimicry.training import build_dataset, export, finetune
from mimicry.training.corpus import encode_png, normalize_artwork, sha256_bytes


def real_corpus(out, artists, n=6, size=32):
    rng = np.random.default_rng(5)
    rows = []
    for artist in artists:
        folder = out / "real" / artist.lower()
        folder.mkdir(parents=True)
        for i in range(n):
            im = Image.new("RGB", (48, 48), "white")
            ImageDraw.Draw(im).rectangle([8, 8, 8 + int(rng.integers(10, 30)), 30], fill=(200, 40, 40), outline="black")
            data = encode_png(normalize_artwork(im, size))
            (folder / f"w{i}.png").write_bytes(data)
            rows.append({"path": f"real/{artist.lower()}/w{i}.png", "label": "human", "artist": artist,
                         "caption": "clip art of a house", "sha256": sha256_bytes(data)})
    with open(out / "real_manifest.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_dataset_finetune_export_scan(tiny_base, tmp_path):
    demo = tmp_path / "demo"
    artists = ["Ann", "Bob", "Cy", "Dee"]
    real_corpus(demo, artists)
    assert build_dataset.main([
        "--base", str(tiny_base), "--out", str(demo), "--runs", str(tmp_path / "runs"),
        "--class-dir", str(tmp_path / "class"), "--artists", *artists, "--min-works", "6", "--resolution", "32",
        "--db-steps", "1", "--db-batch-size", "1", "--num-class-images", "1", "--gen-steps", "2",
        "--val-artists", "Cy", "--test-artists", "Dee"]) == 0

    run = tmp_path / "ft"
    finetune.main(finetune.parse_args(["--manifest", str(demo / "manifest.jsonl"), "--out", str(run),
                                       "--epochs", "1", "--input-size", "64", "--batch-size", "8",
                                       "--workers", "0", "--lr", "1e-3"]))
    model_dir = tmp_path / "model"
    card = export.main(export.parse_args(["--run", str(run), "--out", str(model_dir),
                                          "--trained-on", "a test's tiny synthetic dataset"]))
    assert card["metrics"]["onnx_parity_max_abs_logit_diff"] <= 1e-4

    test_rows = [json.loads(x) for x in (demo / "manifest.jsonl").read_text().splitlines()]
    test_rows = [r for r in test_rows if r["split"] == "test"]
    (tmp_path / "scan").mkdir()
    for r in test_rows:
        (tmp_path / "scan" / f"{r['label']}_{r['path'].replace('/', '_')}").write_bytes((demo / r["path"]).read_bytes())
    (tmp_path / "scan" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "verdicts.csv"
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "scan"), "--model", str(model_dir), "-o", str(out)])
    assert result.exit_code in (0, 1, 3), result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(test_rows) + 1
    broken = [r for r in rows if r["source"].endswith("broken.png")]
    assert broken[0]["error_code"] == "corrupt" and broken[0]["score"] == ""
    scored = [r for r in rows if not r["error"]]
    assert all(r["label"] in ("human", "uncertain", "ai-mimicry") and 0 <= float(r["score"]) <= 1 for r in scored)
    assert {r["model"] for r in rows} == {"model"}
