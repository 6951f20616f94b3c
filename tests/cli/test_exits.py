"""One meaning per exit code in ``mimicry scan``, ``check`` and ``explain`` (``mimicry/exits.py``):
0 nothing flagged, 1 ai-mimicry, 2 usage error or unusable model, 3 a file had errors, 130 interrupted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mimicry import exits
from mimicry.cli import app
from mimicry.detector.detector import Detector

COMMANDS = ("scan", "check", "explain")


def run(command: str, image, model_dir, tmp_path, *extra: str):
    """``command`` on one image; explain writes its overlay into ``tmp_path``; check uses an empty registry."""
    args = {"scan": ["scan", str(image)],
            "check": ["check", str(image)],
            "explain": ["explain", str(image), "-o", str(tmp_path / "heat.png")]}[command]
    return CliRunner().invoke(app, [*args, "--model", str(model_dir), *extra],
                              env={"MIMICRY_REGISTRY": str(tmp_path / "registry.sqlite3")})


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("outcome, code", [("flagged", exits.EXIT_FLAGGED), ("clean", exits.EXIT_OK),
                                           ("broken", exits.EXIT_ERRORS)])
def test_the_same_image_gives_the_same_code_in_every_command(command, outcome, code, images, model_dir, tmp_path):
    result = run(command, images[outcome], model_dir, tmp_path)
    assert result.exit_code == code, (command, result.output)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unusable_model_is_a_usage_error_everywhere(command, images, tmp_path):
    result = run(command, images["clean"], tmp_path / "no-such-model", tmp_path)
    assert result.exit_code == exits.EXIT_USAGE, result.output


def test_check_json_exits_as_check_does(images, model_dir, tmp_path):
    assert run("check", images["flagged"], model_dir, tmp_path, "--json").exit_code == exits.EXIT_FLAGGED
    assert run("check", images["clean"], model_dir, tmp_path, "--json").exit_code == exits.EXIT_OK
    unknown = run("check", images["clean"], model_dir, tmp_path, "--artist", "Nobody")
    assert unknown.exit_code == exits.EXIT_USAGE, unknown.output  # a usage error, not a file's error


def test_check_and_explain_say_when_the_file_s_metadata_set_the_label(images, model_dir, tmp_path):
    # A black image (the model says human) whose PNG carries Automatic1111's parameters: flagged by its metadata,
    # and both doors say so, as the API and scan rows do (check once printed only "ai-mimicry").
    import io
    import json

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    declared = tmp_path / "declared.png"
    Image.open(io.BytesIO(images["clean"].read_bytes())).save(declared, pnginfo=info)
    for command in ("check", "explain"):
        result = run(command, declared, model_dir, tmp_path)
        assert result.exit_code == exits.EXIT_FLAGGED, result.output
        text = " ".join(result.output.split())  # the terminal may wrap it
        assert "label from the file's metadata (declared-ai-by-metadata); the model alone says human" in text
        assert "png.a1111_parameters" in text
    body = json.loads(run("check", declared, model_dir, tmp_path, "--json").stdout)
    assert (body["label"], body["label_reason"], body["model_label"]) == ("ai-mimicry", "declared-ai-by-metadata", "human")
    assert [s["signal"] for s in body["provenance"]] == ["png.a1111_parameters"]


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_is_130_everywhere(command, images, model_dir, tmp_path, monkeypatch):
    """Interrupted while the model loads (before scan's own handler is reached): 130, not click's 1."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Detector, "from_dir", interrupted)
    result = run(command, images["clean"], model_dir, tmp_path)
    assert result.exit_code == exits.EXIT_INTERRUPTED and "interrupted" in result.output, result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_documents_the_same_codes(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "130 "):
        assert any(line.strip(" │").startswith(code) for line in result.output.splitlines()), (command, code)
    assert "ai-mimicry" in result.output and "interrupted" in result.output


def test_the_library_has_no_terminal_and_no_exit_codes():
    """The command line owns the terminal and the exit codes (mimicry/scan_cli.py, mimicry/exits.py);
    the library the service and Ray also use prints nothing and decides no process's exit status."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted((root / "detector").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in {"rich", "typer", "click", "tqdm"}]
            if isinstance(node, ast.Name) and node.id.startswith("EXIT_"):
                found.append(f"{path.name}:{node.lineno} uses {node.id}")
    assert not found, found


def test_a_training_command_s_usage_line_names_it_as_typed():
    # argparse names the program after sys.argv[0]: the forwarded module's usage must read "mimicry train
    # dreambooth ...", a command that can be run as written, not "mimicry ...".
    import sys

    before = sys.argv[0]
    result = CliRunner().invoke(app, ["train", "dreambooth", "--help"], prog_name="mimicry")
    assert result.exit_code == 0 and result.output.startswith("usage: mimicry train dreambooth "), result.output
    assert sys.argv[0] == before
