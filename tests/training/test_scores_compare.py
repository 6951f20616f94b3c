"""Comparing runs on the same human works: the AUROC of one AI source against the human rows less named sources,
and each source's flagged share at the run's own threshold."""

from __future__ import annotations

import json

import pytest

from mimicry.training import scores_compare as sc


def _write(folder, name, rows, threshold=0.5):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"model": name, "threshold": threshold, "group": None, **r}) + "\n"
                            for r in rows))
    (folder / f"{name}.json").write_text(json.dumps({"held_out": []}))
    return path


def _rows(source, label, scores):
    return [{"source": source, "label": label, "scores": {"clean": s, "jpeg75": s / 2}} for s in scores]


def test_dropping_a_human_source_ranks_on_the_rest_and_counts_what_is_left(tmp_path):
    # SD scores 0.6 and 0.8; clip art below both; portraits above both: with the portraits the AUROC is 0.5
    # (each SD image beats the 2 clip-art works and neither portrait), without them 1.0.
    rows = (_rows("sd", "ai-mimicry", [0.6, 0.8]) + _rows("clip", "human", [0.1, 0.2])
            + _rows("portraits", "human", [0.9, 0.95]) + _rows("flux", "ai-mimicry", [0.01]))
    run = sc.load(_write(tmp_path, "a", rows))
    assert sc.compare(run, "sd", set())["auroc"] == pytest.approx(0.5)
    without = sc.compare(run, "sd", {"portraits"})
    assert without["auroc"] == pytest.approx(1.0)
    assert (without["n_ai"], without["n_human"]) == (2, 2)  # the other AI source is not on either side
    assert without["flagged"]["portraits (human)"] == {"n": 2, "flagged": 1.0}
    assert without["flagged"]["clip (human)"]["flagged"] == 0.0
    assert without["flagged"]["sd (ai-mimicry)"]["flagged"] == 1.0
    # another condition's scores: the portraits' halved scores (0.45, 0.475) fall under the 0.5 threshold
    assert sc.compare(run, "sd", set(), "jpeg75")["flagged"]["portraits (human)"]["flagged"] == 0.0


def test_cli_reports_each_run_and_warns_when_the_human_sides_differ(tmp_path, capsys):
    a = _write(tmp_path / "x", "a", _rows("sd", "ai-mimicry", [0.9]) + _rows("clip", "human", [0.1, 0.2]))
    b = _write(tmp_path / "y", "b", _rows("sd", "ai-mimicry", [0.9]) + _rows("clip", "human", [0.1])
               + _rows("books", "human", [0.95]))
    out_json = tmp_path / "cmp.json"
    assert sc.main([str(a), str(b), "--ai", "sd", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "a: sd against 2 human works: AUROC 1.0000" in printed
    assert "b: sd against 2 human works: AUROC 0.5000" in printed
    assert "not on the same works" not in printed  # same counts
    assert sc.main([str(a), str(b), "--ai", "sd", "--without", "books"]) == 0
    assert "not on the same works" in capsys.readouterr().out  # 2 against 1
    assert json.loads(out_json.read_text())["runs"]["b"]["auroc"] == pytest.approx(0.5)


@pytest.mark.parametrize("args, message", [
    (["--ai", "dalle"], "no AI rows of source 'dalle'"),
    (["--ai", "sd", "--without", "clip"], "no human rows left"),
    (["--ai", "sd", "--condition", "webp"], "no 'webp' scores"),
])
def test_bad_requests_say_why_and_exit_2(tmp_path, capsys, args, message):
    path = _write(tmp_path, "a", _rows("sd", "ai-mimicry", [0.9]) + _rows("clip", "human", [0.1]))
    assert sc.main([str(path), *args]) == 2
    assert message in capsys.readouterr().err
