"""The threshold-rule study over a run's val and test scores files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mimicry.detector.calibration import keep_tpr_threshold
from mimicry.training import threshold_study


def row(source, label, clean, shift=0.0, threshold=0.5):
    return {"model": "m", "source": source, "label": label, "group": f"{source}:{clean}", "threshold": threshold,
            "scores": {"clean": clean, "jpeg75": min(clean + shift, 1.0), "resize0.5": clean}}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_files(tmp_path, name="r"):
    """Val: human clip art 0.00-0.40, mimicry 0.55-0.99. Test: clip art as in val, paintings (held out) spread
    0.30-0.95, the held-out generator 0.35-0.85, the trained-on one 0.55-0.99."""
    val = ([row("clipart", "human", s) for s in np.linspace(0.0, 0.40, 200)]
           + [row("gen", "ai-mimicry", s) for s in np.linspace(0.55, 0.99, 100)])
    test = ([row("clipart", "human", s) for s in np.linspace(0.0, 0.40, 100)]
            + [row("paintings", "human", s, shift=0.02) for s in np.linspace(0.30, 0.95, 100)]
            + [row("new-gen", "ai-mimicry", s) for s in np.linspace(0.35, 0.85, 50)]
            + [row("gen", "ai-mimicry", s) for s in np.linspace(0.55, 0.99, 50)]
            + [row("demo-clipart", "human", 0.99)])
    (tmp_path / "val").mkdir(exist_ok=True)
    (tmp_path / "eval").mkdir(exist_ok=True)
    write(tmp_path / "val" / f"{name}.jsonl", val)
    write(tmp_path / f"{name}.jsonl", test)
    (tmp_path / "eval" / f"{name}.json").write_text(json.dumps({"held_out": ["paintings", "new-gen"]}))
    return val, test


def test_each_rule_is_measured_on_the_held_out_kind_and_on_the_rest(tmp_path):
    val, _ = run_files(tmp_path)
    got = threshold_study.main(["--run", "r", "--val-dir", str(tmp_path / "val"), "--test-dir", str(tmp_path),
                                "--eval-dir", str(tmp_path / "eval"), "--keep", "0.9", "--pooled", "0.01",
                                "--json", str(tmp_path / "out.json")])
    r = got["runs"]["r"]
    assert r["held_out"] == ["new-gen", "paintings"]
    card, kept = r["rules"]["card"], r["rules"]["keep-val-tpr 0.9"]
    assert card["threshold"] == 0.5
    t = keep_tpr_threshold(np.linspace(0.55, 0.99, 100), 0.9)
    assert kept["threshold"] == pytest.approx(t) and t > 0.5
    paintings = np.linspace(0.30, 0.95, 100)
    assert card["human held_out"]["clean"] == {"n": 100, "flagged": pytest.approx((paintings >= 0.5).mean())}
    assert kept["human held_out"]["clean"]["flagged"] == pytest.approx((paintings >= t).mean())
    assert kept["human held_out"]["jpeg75"]["flagged"] >= kept["human held_out"]["clean"]["flagged"]
    # The demo clip art (one human work at 0.99) is left out of the figures.
    assert card["human trained_on"]["clean"] == {"n": 100, "flagged": 0.0}
    assert kept["ai trained_on"]["clean"]["flagged"] == pytest.approx((np.linspace(0.55, 0.99, 50) >= t).mean())
    assert set(kept["ai held_out"]) == {"clean"}
    # pooled 1% of 600 val human scores (200 works x 3 conditions): the 7th highest sets it.
    every = np.sort(np.concatenate([np.linspace(0.0, 0.40, 200)] * 3))[::-1]
    assert r["rules"]["pooled 0.01"]["threshold"] == pytest.approx(np.nextafter(every[6], 1))
    s = got["summary"]["keep-val-tpr 0.9"]
    assert s["held_out_human_flagged_max"] == kept["human held_out"]["clean"]["flagged"]
    assert s["held_out_ai_flagged_median"] == kept["ai held_out"]["clean"]["flagged"]
    assert got["summary"]["card"]["trained_on_ai_flagged_min"] > s["trained_on_ai_flagged_min"]
    assert json.loads((tmp_path / "out.json").read_text())["summary"] == got["summary"]


def test_files_of_two_models_or_a_missing_condition_are_refused(tmp_path):
    val, test = run_files(tmp_path)
    with pytest.raises(ValueError, match="thresholds"):
        threshold_study.study_run(val, [{**test[0], "threshold": 0.7}] + test[1:], ["paintings"])
    bare = [{**r, "scores": {"clean": r["scores"]["clean"]}} for r in val]
    with pytest.raises(ValueError, match="no jpeg75 score"):
        threshold_study.study_run(bare, test, ["paintings"])
    write(tmp_path / "two.jsonl", [test[0], {**test[1], "model": "other"}])
    with pytest.raises(ValueError, match="more than one model"):
        threshold_study.read_scores(tmp_path / "two.jsonl")
