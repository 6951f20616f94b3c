"""``mimicry artists add/list/remove`` and ``mimicry check`` through typer's CliRunner."""

from __future__ import annotations

import json
import shutil

from PIL import Image
from typer.testing import CliRunner

from mimicry.cli import app
from registry_fixtures import REPO


def _run(db, *args):
    return CliRunner().invoke(app, list(args), env={"MIMICRY_REGISTRY": str(db)}, catch_exceptions=False)


def test_add_list_check_remove(db, portfolios, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # default --model and --encoder are relative to the repository
    folder = tmp_path / "ink"
    shutil.copytree(portfolios["ink"], folder)
    query = folder / sorted(p.name for p in folder.iterdir())[-1]
    shutil.move(query, tmp_path / "query.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")

    r = _run(db, "artists", "add", "Ink Person", str(folder), "--consent", "email 2026-11-24")
    assert r.exit_code == 3, r.output  # one file skipped
    assert "broken.png: corrupt" in r.output and "7 work(s) added" in r.output
    assert _run(db, "artists", "add", "Flat", str(portfolios["flat"])).exit_code == 0

    rows = [json.loads(x) for x in _run(db, "artists", "list", "--json").output.splitlines()]
    assert [(x["name"], x["works"], x["consent"]) for x in rows] == [("Flat", 8, ""), ("Ink Person", 7, "email 2026-11-24")]
    assert "Ink Person" in _run(db, "artists", "list").output

    r = _run(db, "check", str(tmp_path / "query.png"), "--json")
    out = json.loads(r.output)
    assert out["label"] in ("human", "uncertain", "ai-mimicry") and 0 <= out["score"] <= 1
    flagged = out["label"] == "ai-mimicry"
    assert r.exit_code == (1 if flagged else 0), r.output  # scan's and explain's exit codes
    assert [a["artist"] for a in out["artists"]] == ["Ink Person", "Flat"]
    assert out["artists"][0]["passes"] is True and len(out["artists"][0]["nearest_works"]) == 3
    assert out["copy_of"] is None  # the style passes, but it is a new work

    enrolled = sorted(folder.glob("ink_*.png"))[0]
    Image.open(enrolled).convert("RGB").save(tmp_path / "reposted.jpg", quality=75)
    out = json.loads(_run(db, "check", str(tmp_path / "reposted.jpg"), "--json").output)
    assert out["copy_of"]["artist"] == "Ink Person" and out["copy_of"]["source"] == str(enrolled)
    assert 0 <= out["copy_of"]["distance"] <= 0.22 and isinstance(out["copy_of"]["work_id"], int)
    r = _run(db, "check", str(tmp_path / "reposted.jpg"), "--artist", "Flat")  # whatever artist is asked about
    assert f"copy of enrolled work {out['copy_of']['work_id']} ({enrolled.name}) by Ink Person" in r.output
    assert "not a copy of any enrolled work" in _run(db, "check", str(tmp_path / "query.png")).output

    r = _run(db, "check", str(tmp_path / "query.png"), "--artist", "Flat")
    assert r.exit_code == (1 if flagged else 0) and "similarity to Flat" in r.output and "no match" in r.output
    assert _run(db, "check", str(tmp_path / "query.png"), "--artist", "Nobody").exit_code == 2
    assert _run(db, "check", str(tmp_path / "missing.png")).exit_code == 3  # a file's error, as in scan

    r = _run(db, "artists", "remove", "Ink Person")
    assert r.exit_code == 0 and "7 work(s)" in r.output
    assert _run(db, "artists", "remove", "Ink Person").exit_code == 2
    assert _run(db, "artists", "add", "X", str(tmp_path / "nowhere")).exit_code == 2


def test_reembed_command_moves_a_registry_to_another_encoder(db, portfolios, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    other = tmp_path / "other-encoder"  # the bundled graph with a finer palette: another encoder
    shutil.copytree(REPO / "models" / "style-encoder", other)
    card = json.loads((other / "model.json").read_text())
    card["name"] += "-palette2"
    card["palette"]["bins"] = 2
    (other / "model.json").write_text(json.dumps(card))
    assert _run(db, "artists", "add", "Ink", str(portfolios["ink"]), "--keep-originals").exit_code == 0
    query = str(sorted(portfolios["ink"].iterdir())[0])
    r = _run(db, "check", query, "--encoder", str(other))
    assert r.exit_code == 2 and "mimicry artists reembed" in r.output  # refused, and told what to do
    r = _run(db, "artists", "reembed", "--encoder", str(other))
    assert r.exit_code == 0 and "8 work(s) embedded again" in r.output and "8 from their originals" in r.output
    out = json.loads(_run(db, "check", query, "--encoder", str(other), "--json").output)
    assert out["artists"][0]["artist"] == "Ink" and out["copy_of"]["artist"] == "Ink"
    assert _run(db, "check", query).exit_code == 2  # and now the old encoder is the other one


def test_unusable_registry_and_key_paths_are_one_line_errors_with_exit_2(tmp_path):
    # A mistyped path for a command that only reads the registry: an error, and no empty registry made there.
    typo = tmp_path / "registry.sqlite"
    for args in (["artists", "list"], ["check", str(REPO / "examples" / "real_00.png")]):
        r = CliRunner().invoke(app, [*args, "--registry", str(typo)])
        assert r.exit_code == 2 and f"no registry at {typo}" in " ".join(r.output.split()), r.output
        assert not typo.exists()
    # A file where the registry's folder should be: a one-line error, not a traceback with exit code 1.
    a_file = tmp_path / "h.png"
    shutil.copy(REPO / "examples" / "real_00.png", a_file)
    r = CliRunner().invoke(app, ["artists", "add", "Ann", str(tmp_path), "--registry", str(a_file / "r.sqlite3")])
    assert r.exit_code == 2 and "cannot open the registry" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    # A key database that is no database, or under a file.
    for db in (a_file, a_file / "keys.sqlite3"):
        r = CliRunner().invoke(app, ["keys", "list", "--db", str(db)])
        assert r.exit_code == 2 and f"cannot open the key database {db}" in " ".join(r.output.split()), r.output
    assert a_file.read_bytes() == (REPO / "examples" / "real_00.png").read_bytes()  # and left as it was
    # SQLite takes a file shorter than its header for an empty database and writes over it: refused first.
    small = tmp_path / "notes.txt"
    small.write_bytes(b"x")
    for args in (["keys", "list", "--db", str(small)], ["artists", "list", "--registry", str(small)]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and "not a SQLite database" in " ".join(r.output.split()), r.output
    assert small.read_bytes() == b"x"
    r = CliRunner().invoke(app, ["keys", "revoke", "nope", "--db", str(tmp_path / "keys.sqlite3")])
    assert r.exit_code == 2 and "no active key" in r.output


def test_a_new_artist_none_of_whose_files_can_be_added_is_not_created(db, portfolios, monkeypatch):
    monkeypatch.chdir(REPO)
    assert _run(db, "artists", "add", "Alice", str(portfolios["flat"])).exit_code == 0
    r = _run(db, "artists", "add", "Bob", str(portfolios["flat"]))  # every file is Alice's already
    assert r.exit_code == 3 and "Bob not created" in " ".join(r.output.split()), r.output
    assert [json.loads(x)["name"] for x in _run(db, "artists", "list", "--json").output.splitlines()] == ["Alice"]
