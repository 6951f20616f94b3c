"""Texture energy, and AUROC by texture strata over a scores file and its manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mimicry.training import texture_strata
from mimicry.training.baselines import texture_energy


def picture(busy: float, seed: int, size: int = 200) -> Image.Image:
    """A grey gradient with noise of amplitude ``busy`` on it."""
    rng = np.random.default_rng(seed)
    ramp = np.tile(np.linspace(40, 200, size), (size, 1))
    x = ramp + rng.normal(0, busy, (size, size))
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).convert("RGB")


def test_texture_energy_rises_with_busyness_and_ignores_palette():
    flat, mid, busy = (texture_energy(picture(b, 0)) for b in (0.0, 8.0, 40.0))
    assert flat < mid < busy
    tinted = Image.merge("RGB", [c.point(lambda v: v // 2) if i == 0 else c
                                 for i, c in enumerate(picture(8.0, 0).split())])
    assert abs(texture_energy(tinted) - mid) < 0.15  # a colour change barely moves it


def make_run(root, ai_busy, human_busy, scores_of):
    """A manifest of published files (two AI, two human per energy level) and a scores file over its test split."""
    rows, scores = [], []
    for label, levels, source in (("ai-mimicry", ai_busy, "gen"), ("human", human_busy, "art")):
        for i, b in enumerate(levels):
            path = root / f"{source}{i}.png"
            picture(b, i).save(path)
            rows.append({"source": source, "label": label, "group": f"{source}:{i}", "split": "test",
                         "origin": path.name, "origin_path": str(path), "cell": None})
            scores.append({"model": "m", "source": source, "label": label, "group": f"{source}:{i}",
                           "threshold": 0.5, "scores": {"clean": scores_of(label, b)}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scores))
    return root / "scores.jsonl", root / "manifest.jsonl"


def test_strata_find_where_a_run_leans_on_busyness(tmp_path, capsys):
    levels = [0.0, 2.0, 30.0, 60.0]
    # Ranks flat pictures right, and calls every busy picture human: perfect on the flat half, wrong on the busy.
    def leaning(label, b):
        return (0.9 if label != "human" else 0.1) if b < 10 else (0.2 if label != "human" else 0.3)

    scores, manifest = make_run(tmp_path, levels, levels, leaning)
    out = tmp_path / "t.json"
    assert texture_strata.main([str(scores), str(manifest), "--ai", "gen", "--strata", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["runs"]["scores"]
    assert [(p["n_ai"], p["n_human"]) for p in result["strata"]] == [(2, 2), (2, 2)]
    assert result["strata"][0]["auroc"] == 1.0 and result["strata"][1]["auroc"] == 0.0
    assert result["energy_alone_auroc"] == pytest.approx(0.5)  # both classes equally busy
    assert "flat to busy: 1.000 (2 + 2), 0.000 (2 + 2)" in capsys.readouterr().out


def test_a_scores_file_of_another_manifest_is_refused(tmp_path, capsys):
    scores, manifest = make_run(tmp_path, [0.0, 5.0], [0.0, 5.0], lambda label, b: 0.5)
    rows = manifest.read_text().splitlines()
    manifest.write_text("\n".join(rows[:-1]) + "\n")
    assert texture_strata.main([str(scores), str(manifest), "--ai", "gen"]) == 2
    assert "not scored on this manifest" in capsys.readouterr().err
