"""The threshold-margin study: the margin it reports holds the never-seen kind at the target, and a run is
judged at the margin learnt on the other held-out pair only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mimicry.training import threshold_margin as tm


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))


def test_the_needed_margin_is_the_smallest_that_meets_the_target():
    z = np.concatenate([np.arange(1.0, 11.0), np.full(90, -3.0)])  # 10 of 100 above a 0.5 threshold
    held = sigmoid(z)
    need = tm.needed_margin(held, 0.5, 0.01)
    assert need == pytest.approx(9.0, abs=1e-6)
    assert tm.flagged(held, 0.5, need) <= 0.01
    assert tm.flagged(held, 0.5, need - 1e-3) > 0.01
    assert tm.needed_margin(sigmoid(np.full(50, -5.0)), 0.5, 0.01) == 0.0  # already below: no margin


def _write_run(tmp_path, name, held_out, threshold, groups):
    rows = []
    for (source, label), scores in groups.items():
        rows += [{"model": name, "source": source, "label": label, "group": None, "threshold": threshold,
                  "scores": {"clean": float(s)}} for s in scores]
    (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / f"{name}.json").write_text(json.dumps({"held_out": held_out}))
    return tmp_path / f"{name}.jsonl"


def test_each_run_is_judged_at_the_margin_of_the_other_pair(tmp_path):
    lo, hi = sigmoid(np.linspace(-6, -1, 50)), sigmoid(np.linspace(1, 8, 50))
    a = _write_run(tmp_path, "a", ["gen-x", "paint"], 0.5, {
        ("gen-x", "ai-mimicry"): hi, ("paint", "human"): sigmoid(np.r_[np.linspace(-6, -1, 96), [2, 3, 4, 5]]),
        ("clip", "human"): lo, ("gen-y", "ai-mimicry"): hi})
    b = _write_run(tmp_path, "b", ["gen-y", "books"], 0.5, {
        ("gen-y", "ai-mimicry"): hi, ("books", "human"): sigmoid(np.r_[np.linspace(-6, -1, 98), [2.5, 3.0]]),
        ("clip", "human"): lo, ("gen-x", "ai-mimicry"): hi})
    runs = {p.stem: tm.load_run(p) for p in (a, b)}
    result = tm.study(runs, 0.01)
    assert result["a"]["needed_margin"] == pytest.approx(4.0, abs=1e-3)  # leaves only the 5
    assert result["b"]["needed_margin"] == pytest.approx(2.5, abs=1e-3)  # leaves only the 3.0
    assert result["a"]["margin_from_other_pairs"] == result["b"]["needed_margin"]
    assert result["b"]["margin_from_other_pairs"] == result["a"]["needed_margin"]
    # a at b's small margin still flags 3 of its 100 paintings: the study says so
    assert result["a"]["at_margin_from_other_pairs"]["held_human"] == pytest.approx(0.03)
    assert result["a"]["at_rule"]["held_human"] == pytest.approx(0.04)
    assert result["b"]["at_margin_from_other_pairs"]["held_human"] == 0.0
