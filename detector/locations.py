"""Where things are found: model directories by name or path, and the per-user data folder.

**Models.** One resolver serves every door (the CLI's ``--model``/``--encoder``, the service's
settings, the Python API, the Ray engine). A value is tried, in order, as

1. a path: an existing directory is used as it is (for a bare name, only one that holds a ``model.json``:
   a folder of images that happens to be called ``default`` in the working directory does not hide the
   bundled model);
2. ``$MIMICRY_MODELS/<name>``, when that variable is set;
3. the copy bundled with the package (``default``: the detector, ``style-encoder``: the registry's
   style encoder).

Steps 2 and 3 apply to a bare name (``default``, ``style-encoder``, ``my-model``); a path with a
folder in it (``models/default``, ``./x``, ``/srv/m``) is used as given, so a mistyped path is an
error, never silently the bundled model. Nothing is looked up relative to where the package is run
from except step 1, which is what a user typing a path expects.

The bundled models travel inside the wheel as package data (``mimicry/models/<name>/``, mapped from
the repository's ``models/`` folder); in a checkout (an editable install) they are that folder. Both
layouts keep ``models/`` beside this package's folder, which is how :func:`bundled_models_dir` finds
them.

**Per-user data.** API keys and the style registry live in one folder: ``$MIMICRY_HOME`` if set,
else the platform's user data folder for ``mimicry`` (platformdirs: ``~/.local/share/mimicry`` or
``$XDG_DATA_HOME/mimicry`` on Linux, ``~/Library/Application Support/mimicry`` on macOS,
``%LOCALAPPDATA%\\mimicry`` on Windows). What is kept there is private to its owner: a folder made
for it is created ``0700`` (:func:`private_dir`) and a database file ``0600`` before SQLite opens it
(:func:`private_file`; SQLite gives its ``-wal`` and ``-shm`` files the database's mode). Folders and
files that already exist keep theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

from .bundle import CARD_FILE, ModelError

MODELS_ENV = "MIMICRY_MODELS"
HOME_ENV = "MIMICRY_HOME"
DEFAULT_MODEL = "default"
DEFAULT_ENCODER = "style-encoder"
APP_NAME = "mimicry"


def bundled_models_dir() -> Path:
    """The folder of bundled model directories (it may lack some, in a trimmed install)."""
    return Path(__file__).resolve().parent.parent / "models"


def bundled_models() -> list[str]:
    """Names of the bundled model directories (those with a ``model.json``)."""
    root = bundled_models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CARD_FILE).is_file())


def is_name(spec: str | os.PathLike) -> bool:
    """True for a bare model name (no folder part), which the lookup may resolve."""
    s = os.fspath(spec)
    seps = {os.sep, os.altsep or os.sep, "/"}
    return bool(s) and s not in (".", "..") and not any(c in s for c in seps) and not s.startswith("~")


def resolve_model_dir(spec: str | os.PathLike, what: str = "model") -> Path:
    """The model directory that ``spec`` (a path or a bare name) stands for, by the order in the
    module's docstring. A path is returned as given (expanded ``~``) whether or not it exists, so
    the loader's own message says what is wrong with it; a bare name that none of the three steps
    finds is a :class:`~mimicry.detector.bundle.ModelError` naming every place tried."""
    path = Path(os.fspath(spec)).expanduser()
    if not is_name(spec) or (path / CARD_FILE).is_file():
        return path
    name = os.fspath(spec)
    tried = [f"{Path.cwd() / name} ({'no ' + CARD_FILE + ' in that directory' if path.is_dir() else 'no such directory'})"]
    env = os.environ.get(MODELS_ENV)
    if env:
        candidate = Path(env).expanduser() / name
        if candidate.is_dir():
            return candidate
        tried.append(f"${MODELS_ENV}/{name} = {candidate} (no such directory)")
    else:
        tried.append(f"${MODELS_ENV}/{name} (${MODELS_ENV} is not set)")
    bundled = bundled_models_dir() / name
    if bundled.is_dir():
        return bundled
    have = bundled_models()
    tried.append(f"the bundled models ({', '.join(have) if have else 'none in this installation'})")
    raise ModelError(f"{what} {name!r} not found; tried " + "; ".join(tried))


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` and any missing parents with mode ``0700`` (only the owner may enter); an
    existing folder is left as it is. Returns the path."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(p, 0o700)  # mkdir's mode is narrowed by the umask only; be exact
    return path


def private_file(path: str | os.PathLike) -> Path:
    """Create an empty file at ``path`` with mode ``0600`` unless it exists (an existing file keeps
    its mode), its folder with :func:`private_dir`. Returns the path."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    os.close(fd)
    return path


def data_dir() -> Path:
    """The per-user folder for API keys and the style registry (not created here: see
    :func:`private_dir`)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))
