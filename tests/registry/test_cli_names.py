"""The command line prints artist names and consent notes as they are: never read as rich markup."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mimicry.cli import app
from mimicry.detector.registry import Registry

MARKUP = ["[/]", "[link=mailto:x@example.invalid]click[/link]", "[bold red]loud[/]"]


def _run(db, *args):
    env = {"MIMICRY_REGISTRY": str(db), "COLUMNS": "300"}  # a wide table: no name is wrapped
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def test_names_and_notes_that_look_like_markup_are_printed_as_text(db):
    with Registry.open(db) as reg:
        for name in MARKUP:
            reg.add_artist(name, consent=f"note {name}")
    r = _run(db, "artists", "list")
    assert r.exit_code == 0, r.output
    for name in MARKUP:
        assert name in r.output and f"note {name}" in r.output, name
    assert [json.loads(x)["name"] for x in _run(db, "artists", "list", "--json").output.splitlines()] == sorted(MARKUP)
    r = _run(db, "artists", "remove", MARKUP[1])
    assert r.exit_code == 0 and f"removed {MARKUP[1]} and 0 work(s)" in r.output


def test_remove_names_the_artist_as_stored(db):
    with Registry.open(db) as reg:
        reg.add_artist("Jane Doe")
    r = _run(db, "artists", "remove", "  jane DOE ")
    assert r.exit_code == 0 and "removed Jane Doe and 0 work(s)" in r.output


def test_control_characters_in_names_and_notes_are_printed_as_escapes(db):
    """An escape sequence in a consent note (free text), or in a name stored before names were
    checked, reaches the terminal as visible text, not as a command to it."""
    with Registry.open(db) as reg:
        reg.add_artist("Ann", consent="ok\x1b[2J\x1b]8;;https://example.invalid\x07click")
        reg._conn.execute("UPDATE artists SET name = ? WHERE name = 'Ann'", ("Ann\x1b[31m\u202e",))
    r = _run(db, "artists", "list")
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output and "\u202e" not in r.output
    assert "Ann\\x1b[31m\\u202e" in r.output and "ok\\x1b[2J\\x1b]8;;https://example.invalid\\x07click" in r.output
