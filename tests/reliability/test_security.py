"""No pickle in the inference path; torch.load only with weights_only=True anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFERENCE = ("detector", "service", "mimicry")
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal", "torch"}


def _py_files(*packages: str):
    for pkg in packages:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, node.module.split(".")[0]


def _calls(tree: ast.AST, name: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            dotted = []
            while isinstance(f, ast.Attribute):
                dotted.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                dotted.append(f.id)
            if ".".join(reversed(dotted)) == name:
                yield node


def test_inference_packages_never_import_pickle_or_torch():
    found = []
    for path in _py_files(*INFERENCE):
        if path.parts[-2:] == ("mimicry", "cli.py"):  # forwards to training/ by module name, on request only
            continue
        for node, mod in _imports(ast.parse(path.read_text(), str(path))):
            if mod in UNSAFE_MODULES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {mod}")
    assert not found, found


def test_numpy_load_never_allows_pickle():
    found = []
    for path in _py_files(*INFERENCE, "training"):
        for call in _calls(ast.parse(path.read_text(), str(path)), "np.load"):
            for kw in call.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert not found, found


def test_torch_load_only_with_weights_only_true():
    found, seen = [], 0
    for path in _py_files("training", *INFERENCE):
        for call in _calls(ast.parse(path.read_text(), str(path)), "torch.load"):
            seen += 1
            ok = any(kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is True
                     for kw in call.keywords)
            if not ok:
                found.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert not found, f"torch.load without weights_only=True: {found}"
    assert seen >= 1, "the packaged EfficientNet weights are loaded with torch.load somewhere in training/"


def test_models_ship_no_pickle_files():
    suspicious = [p for p in (ROOT / "models").rglob("*")
                  if p.suffix in {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib"}]
    assert not suspicious, suspicious
