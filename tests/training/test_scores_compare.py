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


def _grouped(source, label, scores, group):
    return [{"source": source, "label": label, "group": group, "scores": {"clean": s}} for s in scores]


def test_paired_bootstrap_draws_groups_and_brackets_the_difference(tmp_path):
    # 20 AI groups of 2 cells and 30 human works. Run a ranks 10 AI groups below every human work; run b is run a
    # with those groups lifted above, so b beats a on every draw that holds any of them (all but a vanishing few).
    ai_a = [_grouped("sd", "ai-mimicry", [0.2 + 0.01 * i] * 2 if i < 10 else [0.9, 0.95], f"artist:{i}")
            for i in range(20)]
    ai_b = [_grouped("sd", "ai-mimicry", [0.9, 0.95], f"artist:{i}") for i in range(20)]
    human = [_grouped("clip", "human", [0.5 + 0.01 * i], f"file:{i}") for i in range(30)]
    flat = lambda groups: [r for g in groups for r in g]  # noqa: E731
    a = sc.load(_write(tmp_path, "a", flat(ai_a + human)))
    b = sc.load(_write(tmp_path, "b", flat(ai_b + human)))
    [res] = sc.bootstrap([a, b], "sd", set(), draws=300)
    assert res["difference"] == pytest.approx(0.5)  # a: half the AI cells beat every human work, b: all
    lo, hi = res["interval95"]
    assert 0.2 < lo < 0.5 < hi < 0.8  # how many low groups a draw holds: about 10 of 20, give or take 4
    assert res["share_above_zero"] == 1.0 and res["groups"] == 50
    # the same scores twice: no difference on any draw
    [same] = sc.bootstrap([a, a], "sd", set(), draws=50)
    assert same["interval95"] == [0.0, 0.0] and same["share_above_zero"] == 0.0
    # a run whose human side holds other works cannot be paired
    c = sc.load(_write(tmp_path, "c", flat(ai_b + human[:-1])))
    assert sc.bootstrap([a, c], "sd", set(), draws=10) is None


def test_cli_prints_the_paired_interval_only_on_the_same_works(tmp_path, capsys):
    rows = _grouped("sd", "ai-mimicry", [0.9, 0.4], "artist:x") + _grouped("clip", "human", [0.1, 0.5], None)
    a = _write(tmp_path / "x", "a", rows)
    b = _write(tmp_path / "y", "b", rows[:1] + _grouped("sd", "ai-mimicry", [0.6], "artist:x") + rows[2:])
    out_json = tmp_path / "cmp.json"
    assert sc.main([str(a), str(b), "--ai", "sd", "--draws", "20", "--json", str(out_json)]) == 0
    assert "b - a: +0.2500 (95% of 20 paired draws of 3 test groups" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["runs"]["b"]["paired_bootstrap"]["against"] == "a"
    other = _write(tmp_path / "z", "c", rows[:2] + _grouped("books", "human", [0.2, 0.3], None))
    assert sc.main([str(a), str(other), "--ai", "sd", "--draws", "20"]) == 0
    assert "no paired interval" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        sc.main([str(a), str(b), "--ai", "sd", "--draws", "-1"])
    assert e.value.code == 2 and "--draws must be 0 or more" in capsys.readouterr().err
