"""The calibrate study: a threshold set on some works of a never-seen kind, measured on the rest of that kind,
never below the model's own, with the cost in AI images flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mimicry.training import calibrate_study as cs


def _run(tmp_path, rows, held_out, threshold=0.9):
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps({"model": "m", "threshold": threshold, **r}) + "\n" for r in rows))
    (tmp_path / "run.json").write_text(json.dumps({"held_out": held_out}))
    return cs.load(path)


def rows_of(source, label, scores, groups=None):
    return [{"source": source, "label": label, "group": None if groups is None else groups[i],
             "scores": {"clean": float(s), "jpeg75": float(s)}} for i, s in enumerate(scores)]


def test_works_of_the_kind_raise_the_threshold_for_the_rest_and_the_cost_is_measured(tmp_path):
    rng = np.random.default_rng(1)
    # 20 books of 10 spreads; 15% of the spreads score high (0.95-0.999), the rest low.
    paint = np.where(rng.random(200) < 0.15, rng.uniform(0.95, 0.999, 200), rng.uniform(0.0, 0.3, 200))
    groups = [f"book {i // 10}" for i in range(200)]
    ai_new = rng.uniform(0.85, 1.0, 300)
    rows = (rows_of("paint", "human", paint, groups) + rows_of("flux", "ai-mimicry", ai_new)
            + rows_of("sd", "ai-mimicry", rng.uniform(0.97, 1.0, 300)) + rows_of("clip", "human", rng.uniform(0, 0.5, 100)))
    run = _run(tmp_path, rows, ["flux", "paint"])
    result = cs.study(run, [20, 100], draws=50, at=(0.99,))["paint"]
    assert result["at"]["0.99"]["kind_clean"] == pytest.approx(np.mean(paint >= 0.99))
    before = result["before"]
    assert before["kind_clean"] == pytest.approx(np.mean(paint >= 0.9))
    assert before["ai_never_seen_clean"] == pytest.approx(np.mean(ai_new >= 0.9))
    k100 = result["by_k"]["100"]
    assert k100["threshold"]["p5"] >= 0.9  # never below the model's own
    assert k100["kind_clean"]["median"] < before["kind_clean"] / 3  # the rest of the kind is held
    assert k100["ai_never_seen_clean"]["median"] < before["ai_never_seen_clean"]  # and that costs AI flagged
    assert k100["works_given"]["p5"] >= 100 and k100["draws"] == 50
    assert result["by_k"]["20"]["threshold"]["median"] <= k100["threshold"]["median"]


def test_a_kind_that_scores_low_keeps_the_model_threshold(tmp_path):
    rows = rows_of("books", "human", np.linspace(0, 0.5, 120), [f"b{i // 4}" for i in range(120)]) \
        + rows_of("sd", "ai-mimicry", np.linspace(0.8, 1, 50))
    result = cs.study(_run(tmp_path, rows, ["books"]), [25], draws=10, under=("jpeg75",))["books"]
    assert result["by_k"]["25"]["threshold"]["p95"] == 0.9
    assert "| 25 |" in cs.table("run", {"books": result}, ("clean",))


def test_a_missing_condition_is_a_clear_error(tmp_path):
    rows = rows_of("books", "human", [0.1, 0.2]) + rows_of("sd", "ai-mimicry", [0.9])
    with pytest.raises(ValueError, match="no webp75 scores"):
        cs.study(_run(tmp_path, rows, ["books"]), [1], under=("webp75",))
