"""The wheel as a new user gets it: built, installed into a fresh venv, used from an empty folder.

The distribution is built (sdist and wheel, ``python -m build``) from a copy of what the build reads
(pyproject.toml, README.md, LICENSE and the folders that pyproject maps into ``mimicry``), so the
checkout gets no build/ folder and no stale file can slip in. The wheel goes into a fresh venv with
the base dependencies only (pip installs them from its cache or the package index), and every
command runs from an empty temporary folder: nothing may be found relative to the checkout.

The tests run in file order: first the base install (scan, import, no torch, the one-line hint
without the serve extra), then the same venv with the serve extra added (``mimicry serve``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MAX_WHEEL_BYTES = 40 * 1024 * 1024
SERVE_HINT = 'mimicry serve needs the serve extra: pip install "mimicry-detect[serve]"'


def run(cmd: list[str], *, cwd: Path, env: dict, timeout: float = 600, check: bool = True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}")
    return r


def build_inputs() -> list[str]:
    """What the build reads: the metadata files and every folder mapped into the package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = sorted(set(config["tool"]["setuptools"]["package-dir"].values()))
    return ["pyproject.toml", "README.md", *config["project"]["license-files"], *folders]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("src")
    for name in build_inputs():
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)], cwd=src, env=env)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def user(tmp_path_factory, dist) -> dict:
    """A fresh venv with the wheel and its base dependencies, an empty working folder, and an
    environment that points nowhere near the checkout."""
    root = tmp_path_factory.mktemp("user")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MIMICRY_MODELS", "MIMICRY_MODEL_DIR", "PYTHONHOME")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", MIMICRY_HOME=str(root / "home"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", NO_COLOR="1", COLUMNS="200")
    work = root / "empty"
    work.mkdir()
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(dist["wheel"])], cwd=work, env=env)
    return {"bin": bin_dir, "python": str(bin_dir / "python"), "mimicry": str(bin_dir / "mimicry"), "env": env,
            "work": work, "serve_installed": False}


def base_only(user: dict) -> None:
    if user["serve_installed"]:
        pytest.fail("this test needs the venv without the serve extra: run the module in file order")


# ----------------------------------------------------------------------------- the artifacts


def test_wheel_is_one_package_with_models_assets_and_licence(dist):
    size = dist["wheel"].stat().st_size
    print(f"\nwheel {dist['wheel'].name}: {size:,} bytes ({size / 2**20:.1f} MiB)")
    assert size <= MAX_WHEEL_BYTES, f"the wheel is {size / 2**20:.1f} MiB, over the 40 MiB budget"
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mimicry"}  # one import name, nothing else
    for model in ("default", "style-encoder"):
        assert f"mimicry/models/{model}/model.onnx" in names and f"mimicry/models/{model}/model.json" in names
    assert not any("tiny-sd-clipart" in n for n in names)  # the diffusion base stays out of the wheel
    assert "mimicry/service/static/index.html" in names
    assert any(re.fullmatch(r"mimicry_detect-[^/]+\.dist-info/licenses/LICENSE", n) for n in names)
    with tarfile.open(dist["sdist"]) as sdist:
        assert any(n.endswith("/LICENSE") and n.count("/") == 1 for n in sdist.getnames())


# ----------------------------------------------------------------------------- base install


def test_base_install_has_no_torch_and_imports_the_detector(user):
    base_only(user)
    run([user["python"], "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"],
        cwd=user["work"], env=user["env"])
    r = run([user["python"], "-c", "from mimicry.detector import Detector; d = Detector.default(); "
                                   "print(d.name, d.bundle.path)"], cwd=user["work"], env=user["env"])
    name, path = r.stdout.split()
    assert "site-packages" in path and Path(path).name == "default" and str(ROOT) not in path
    r = run([user["mimicry"], "--version"], cwd=user["work"], env=user["env"])
    assert r.stdout.startswith("mimicry-detect ")


def test_scan_from_an_empty_folder_gives_a_verdict_and_an_error_row(user):
    base_only(user)
    example = sorted(EXAMPLES.glob("*.png"))[0]
    shutil.copy2(example, user["work"] / example.name)
    (user["work"] / "corrupt.png").write_bytes(example.read_bytes()[:200])  # a PNG cut short
    r = run([user["mimicry"], "scan", example.name, "corrupt.png", "--format", "csv"],
            cwd=user["work"], env=user["env"], check=False)
    assert r.returncode in (1, 3), r.stderr  # flagged, or an error row and nothing flagged
    rows = {row["source"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    good, bad = rows[example.name], rows["corrupt.png"]
    assert good["label"] in ("human", "uncertain", "ai-mimicry") and 0 <= float(good["score"]) <= 1
    assert good["error_code"] == "" and good["model"]
    assert bad["label"] == "" and bad["error_code"] and bad["error"]
    assert "scanned 2 images" in r.stderr


def test_calibrate_on_the_base_install_writes_a_model_scan_can_use(user):
    base_only(user)
    kind = user["work"] / "own" / "clipart"
    kind.mkdir(parents=True, exist_ok=True)
    for p in sorted(EXAMPLES.glob("real_*.png")):
        shutil.copy2(p, kind / p.name)
    r = run([user["mimicry"], "calibrate", "own", "-o", "mine", "--under", "jpeg75"],
            cwd=user["work"], env=user["env"], check=False)
    assert r.returncode == 0, r.stderr + r.stdout
    card = json.loads((user["work"] / "mine" / "model.json").read_text())
    assert card["thresholds"]["calibrated_on_own_works"]["kinds"]["clipart"]["works"] == 6
    r = run([user["mimicry"], "scan", "own", "-r", "--model", "mine", "--format", "csv"],
            cwd=user["work"], env=user["env"], check=False)
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 6 and {row["model_version"] for row in rows} == {card["version"]}
    assert all(row["label"] != "ai-mimicry" for row in rows)  # none of the works it was set on is flagged


def test_serve_and_keys_without_the_serve_extra_say_so_in_one_line(user):
    base_only(user)
    r = run([user["mimicry"], "serve"], cwd=user["work"], env=user["env"], check=False)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", SERVE_HINT + "\n")
    r = run([user["mimicry"], "keys", "list"], cwd=user["work"], env=user["env"], check=False)
    assert r.returncode == 2 and r.stderr == SERVE_HINT.replace("mimicry serve", "mimicry keys") + "\n"


# ----------------------------------------------------------------------------- with [serve]


@pytest.fixture(scope="module")
def served(user, dist):
    run([user["python"], "-m", "pip", "install", "--quiet", f"{dist['wheel']}[serve]"],
        cwd=user["work"], env=user["env"])
    user["serve_installed"] = True
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(user["work"] / "serve.log", "w")
    proc = subprocess.Popen([user["mimicry"], "serve", "--port", str(port)], cwd=user["work"], env=user["env"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mimicry serve exited {proc.returncode}:\n"
                                     + (user["work"] / "serve.log").read_text()[-4000:])
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("mimicry serve was not ready in 120 s:\n"
                                     + (user["work"] / "serve.log").read_text()[-4000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_serve_from_an_empty_folder_page_docs_and_detect(served):
    import httpx

    with httpx.Client(base_url=served, timeout=30) as c:
        page = c.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        docs = c.get("/docs")
        assert docs.status_code == 200
        assert re.findall(r"https?://", docs.text) == []  # nothing from a CDN or any other host
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", docs.text)
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        for a in assets:
            got = c.get(a)
            assert got.status_code == 200 and got.content, a
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
        example = sorted(EXAMPLES.glob("*.png"))[0]
        r = c.post("/v1/detect", files={"file": (example.name, example.read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] in ("human", "uncertain", "ai-mimicry") and body["error"] is None
