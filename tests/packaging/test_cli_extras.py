"""The command line without an extra: one line naming the extra to install, exit 2; --version.

The extras are installed in the project's venv, so a missing one is simulated by hiding its module
(``sys.modules[name] = None`` makes ``import name`` fail as if it were not installed). The real
thing, a wheel installed without extras, is tested in test_wheel.py.
"""

from __future__ import annotations

import sys
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from mimicry.cli import app

runner = CliRunner()


def hide(monkeypatch, *modules: str) -> None:
    """Make ``import m`` fail for each module, and forget what imported them already."""
    for name in list(sys.modules):
        if name.startswith(("mimicry.service", "mimicry.training", "mimicry.ray_scan")):
            monkeypatch.delitem(sys.modules, name)
            parent, _, child = name.rpartition(".")  # `from mimicry import ray_scan` reads the attribute
            if parent in sys.modules:
                monkeypatch.delattr(sys.modules[parent], child, raising=False)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


@pytest.mark.parametrize("args, hidden, command, extra", [
    (["serve"], "uvicorn", "serve", "serve"),
    (["keys", "list"], "pydantic_settings", "keys", "serve"),
    (["scan", "x.png", "--engine", "ray"], "ray", "scan --engine ray", "scale"),
    (["train", "tiny-base", "--out", "base"], "torch", "train tiny-base", "train"),
])
def test_a_missing_extra_is_one_line_and_exit_2(monkeypatch, tmp_path, args, hidden, command, extra):
    monkeypatch.chdir(tmp_path)  # nothing is written, but if it were, not into the checkout
    hide(monkeypatch, hidden)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr == f'mimicry {command} needs the {extra} extra: pip install "mimicry-detect[{extra}]"\n'
    assert result.stdout == ""


def test_a_missing_module_of_no_extra_is_not_blamed_on_an_extra(monkeypatch):
    from mimicry.extras import needs_extra

    with pytest.raises(ModuleNotFoundError):
        with needs_extra("serve", "serve"):
            import no_such_module_anywhere  # noqa: F401


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"mimicry-detect {version('mimicry-detect')}"
