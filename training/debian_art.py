"""Provenance files for human art shipped in Debian packages, for ``mimicry.training.external``.

Each catalogue entry names a package, the folders of drawn or painted art inside it and how its works are
grouped (a group never straddles two splits). Rows carry the package, its installed version (the
``commit`` field) and its licence line from ``/usr/share/doc/<package>/copyright``, so every derived image
traces back to a file of a versioned package. Every work predates text-to-image models (the packages'
art was drawn for them by people, most of it years before 2022).

``python -m mimicry.training.debian_art --out data/debian_art.jsonl`` (packages not installed are listed
and skipped; ``make art-packages`` installs them)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from mimicry.training.corpus import _fix_mojibake


@dataclasses.dataclass(frozen=True)
class Entry:
    source: str  # the manifest's source name
    package: str
    root: str
    patterns: tuple[str, ...]
    kind: str  # what the art is, for the card
    group_depth: int = 1  # group = the first N folders under root; 0: the file (openclipart: the Author chunk)
    min_bytes: int = 20_000  # icons and tiles are not artworks
    one_per_group: bool = False  # the same work at several resolutions: keep the largest file only
    # A regular expression on the file's stem whose first group names the group (a photographer's suffix, a
    # sprite's name without its frame number); a stem it does not match is a group of its own.
    group_re: str | None = None
    # A file in each group's folder whose ``license = ...`` line names that group's licence (collections whose
    # parts carry their own licences, as Stellarium's sky cultures do); the package's licence line otherwise.
    licence_file: str | None = None
    licence: str | None = None  # the licence of every file chosen, where the copyright file names those files
    # Kept out of the default catalogue run (so out of training data): human art the detector has never seen,
    # listed only when named with --sources, to measure it on kinds it was not trained on (source_flags).
    evaluation_only: bool = False


NON_COMMERCIAL = re.compile(r"\bNC\b|non-?commercial", re.I)

CATALOGUE = (
    Entry("openclipart", "openclipart-png", "/usr/share/openclipart/png", ("**/*.png",), "clip art (vector drawings)",
          min_bytes=30_000),
    Entry("wesnoth-portraits", "wesnoth-1.16-data", "/usr/share/games/wesnoth/1.16/data",
          ("core/images/portraits/**/*.png", "core/images/portraits/**/*.webp",
           "campaigns/*/images/portraits/**/*.png", "campaigns/*/images/portraits/**/*.webp"),
          "painted game portraits", group_depth=4),
    Entry("wesnoth-story", "wesnoth-1.16-data", "/usr/share/games/wesnoth/1.16/data",
          ("core/images/story/*.*", "campaigns/*/images/story/*.*", "core/images/maps/*.*"),
          "painted game story art and maps", group_depth=0),
    Entry("flare", "flare-game", "/usr/share/games/flare/mods",
          ("*/images/portraits/**/*.png", "*/images/cutscenes/**/*.png", "*/images/menus/backgrounds/*.png",
           "*/images/parallax/*.png"), "game portraits, cut-scene and background paintings", group_depth=3),
    Entry("naev-art", "naev-data", "/usr/share/naev/dat/gfx",
          ("planet/exterior/*.*", "loading/*.*", "portraits/**/*.*", "bkg/*.*"),
          "space-game landscapes, loading screens, portraits and backgrounds (painted and rendered)", group_depth=0),
    Entry("widelands-art", "widelands-data", "/usr/share/games/widelands/data",
          ("templates/default/loadscreens/**/*.*", "campaigns/**/*.jpg", "campaigns/**/*.png"),
          "painted strategy-game loading screens and campaign art", group_depth=0, min_bytes=60_000),
    Entry("hedgewars-art", "hedgewars-data", "/usr/share/games/hedgewars/Data",
          ("Graphics/Missions/**/*.png", "Graphics/*.png", "Themes/*/Sky.png", "Themes/*/horizont.png"),
          "cartoon game illustrations and backdrops", group_depth=0),
    Entry("plasma-wallpapers", "plasma-workspace-wallpapers", "/usr/share/wallpapers",
          ("*/contents/images/*.*",), "digital wallpapers (abstract and painted)", group_depth=1,
          min_bytes=50_000, one_per_group=True),
    # Kinds a platform sees that the sources above lack: photographs, 3D renders, photo cut-outs.
    Entry("photographs", "endless-sky-data", "/usr/share/games/endless-sky/images", ("land/*.jpg", "scene/*.*"),
          "landscape, city and archival photographs (morgueFile, Wikimedia Commons and named photographers)",
          group_depth=0, min_bytes=40_000, group_re=r"^.+-([a-z]+)$"),
    Entry("rendered-sprites", "endless-sky-data", "/usr/share/games/endless-sky/images", ("ship/**/*.png",),
          "3D-rendered spaceship sprites", group_depth=0, min_bytes=40_000, group_re=r"^(.*?)[ -]*\d*$"),
    Entry("tuxpaint-stamps", "tuxpaint-stamps-default", "/usr/share/tuxpaint/stamps", ("**/*.png",),
          "photo cut-outs and drawn stamps of a children's paint program", group_depth=2, min_bytes=40_000),
    Entry("desktop-wallpapers", "mate-backgrounds", "/usr/share/backgrounds", ("mate/**/*.jpg", "mate/**/*.png"),
          "desktop wallpapers: photographs, abstract and painted digital art", group_depth=0, min_bytes=40_000,
          group_re=r"^([A-Za-z]+)"),
    Entry("desktop-wallpapers", "gnome-backgrounds", "/usr/share/backgrounds", ("gnome/*.webp", "gnome/*.jpg"),
          "desktop wallpapers: photographs, abstract and painted digital art", group_depth=0, min_bytes=40_000,
          group_re=r"^([A-Za-z]+)"),
    # Drawn and painted kinds the sources above lack (1.4): constellation figures of about thirty sky
    # cultures (ink and pencil drawings, watercolours, manuscript and atlas paintings, many on black), one
    # group per culture; and portraits and engravings that FreeCol reproduces from public-domain originals
    # (its copyright file names them; the framed founding-father portraits, one frame on every one, stay out).
    # Most of FreeCol's are 250 x 300: the dataset builder skips works under its 384-px store, so two remain.
    Entry("constellation-art", "stellarium-data", "/usr/share/stellarium/skycultures",
          ("*/*.png", "*/*.jpg", "*/*.webp", "*/*/*.png", "*/*/*.jpg", "*/*/*.webp"),
          "constellation illustrations of many sky cultures: drawings, watercolours, manuscript and atlas paintings",
          group_depth=1, min_bytes=30_000, licence_file="info.ini"),
    Entry("historical-paintings", "freecol", "/usr/share/games/freecol/default/resources/images",
          ("monarch/*.png", "ui/doi.png", "ui/military.png", "ui/political.png", "ui/religious.png", "ui/trade.png",
           "ui/exploration.png", "ui/landing.png"),
          "public-domain portrait paintings, engravings and a manuscript, as reproduced in a game", group_depth=0,
          min_bytes=20_000, licence="public-domain (the package's copyright file names these files)"),
    # Evaluation only (1.5): kinds no detector here trains on, to measure it on human art it never saw:
    # painted platform-game backgrounds (parallax layers; mostly-empty strips fall under min_bytes), one group
    # per scenery set; a strategy game's 3D-rendered ship hulls and monsters beside its painted species
    # portraits, one group per creature (its animation frames stay together); another's loading screens.
    Entry("supertux-backgrounds", "supertux-data", "/usr/share/games/supertux2/images",
          ("background/**/*.png", "background/**/*.jpg"), "painted platform-game backgrounds and scenery",
          group_depth=2, min_bytes=60_000, evaluation_only=True),
    Entry("freeorion-art", "freeorion-data", "/usr/share/games/freeorion/default/data/art",
          ("species/*.png", "hulls_design/*.png", "icons/monsters/*.png"),
          "3D-rendered ship hulls and monsters, painted species portraits of a strategy game", group_depth=0,
          min_bytes=40_000, group_re=r"^(.*?)[-_]*\d*$", licence="CC-BY-SA-3.0 (the package's copyright file: *.png)",
          evaluation_only=True),
    Entry("megaglest-loading", "megaglest-data", "/usr/share/games/megaglest",
          ("techs/*/factions/*/loading_screen.jpg", "scenarios/*/loading_screen.jpg", "tutorials/*/loading_screen.jpg"),
          "strategy-game loading screens (3D scenes and painted art)", group_depth=0, min_bytes=40_000,
          evaluation_only=True),
)


def package_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def licence_line(package: str) -> str:
    """The package's licence short names from its machine-readable copyright file."""
    path = Path("/usr/share/doc") / package / "copyright"
    if not path.is_file():
        return f"see the {package} package's copyright file"
    names = []
    # Short licence names only (DEP-5 files); a free-text copyright file gives none and is pointed to.
    for m in re.finditer(r"^License:[ \t]*([A-Za-z0-9.+-]+(?: (?:or|and) [A-Za-z0-9.+-]+)*)[ \t]*$",
                         path.read_text(errors="replace"), re.M):
        if m.group(1) not in names:
            names.append(m.group(1))
    return ", ".join(names[:4]) or f"see /usr/share/doc/{package}/copyright"


def openclipart_author(path: Path) -> str:
    try:
        with Image.open(path) as im:
            return _fix_mojibake(str(im.info.get("Author", "")).strip())
    except Exception:  # a broken file is skipped later by the dataset builder, with its reason
        return ""


def group_licence(root: Path, group: str, licence_file: str | None) -> str | None:
    """The ``license = ...`` line of ``licence_file`` in the group's folder, if there is one."""
    path = root / group / licence_file if licence_file and group else None
    if path is None or not path.is_file():
        return None
    found = re.search(r"^license\s*=\s*(.+?)\s*$", path.read_text(errors="replace"), re.M | re.I)
    return found.group(1) if found else None


def rows_for(entry: Entry) -> list[dict]:
    version = package_version(entry.package)
    root = Path(entry.root)
    if version is None or not root.is_dir():
        return []
    licence = entry.licence or licence_line(entry.package)
    seen, rows, group_licences = set(), [], {}
    for pattern in entry.patterns:
        for path in sorted(root.glob(pattern)):
            if path in seen or not path.is_file() or path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp"}:
                continue
            seen.add(path)
            if path.stat().st_size < entry.min_bytes:
                continue
            rel = path.relative_to(root)
            if entry.source == "openclipart":
                # Grouped by author (``artist:<name>``, shared with every other source that names the same
                # person), or by folder when the author is unknown.
                artist = openclipart_author(path)
                group = "" if artist else "folder:" + str(rel.parent)
            else:
                artist = ""
                # group_depth 0: each file is its own group (collections of works by many hands)
                group = "/".join(rel.parts[: min(entry.group_depth, len(rel.parts) - 1)]) or str(rel)
                m = re.match(entry.group_re, path.stem) if entry.group_re else None
                if m and m.group(1).strip():
                    group = f"{entry.package}:{m.group(1).strip().lower()}"
            if group not in group_licences:
                group_licences[group] = group_licence(root, group, entry.licence_file) or licence
            row_licence = group_licences[group]
            if NON_COMMERCIAL.search(row_licence):
                continue  # a detector others may use commercially is not trained on non-commercial licences
            rows.append({
                "file": str(path), "label": "human", "source": entry.source, **({"group": group} if group else {}),
                "repo": f"debian:{entry.package}", "commit": version, "path_in_repo": str(path),
                "blob": hashlib.sha1(path.read_bytes()).hexdigest(), "licence": row_licence, "generator": "",
                "artist": artist, "note": f"{entry.kind}, from the Debian package {entry.package} {version}",
            })
    if entry.one_per_group:
        largest = {}
        for row in rows:
            size = Path(row["file"]).stat().st_size
            if row["group"] not in largest or size > largest[row["group"]][0]:
                largest[row["group"]] = (size, row)
        rows = [r for _, r in largest.values()]
    return rows


def unique(rows: list[dict], seen: set[str]) -> list[dict]:
    """``rows`` less those whose bytes (``blob``) are in ``seen`` or earlier in ``rows``; ``seen`` grows. One
    file shipped in two folders (a sky culture reusing another's figures, a wallpaper in two packages) would
    otherwise be two works, in two groups that may fall on both sides of a split."""
    out = []
    for row in rows:
        if row["blob"] not in seen:
            seen.add(row["blob"])
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sources", nargs="*", default=None,
                   help="catalogue sources to include (default: all but the evaluation-only ones)")
    args = p.parse_args(argv)
    chosen = [e for e in CATALOGUE if (e.source in args.sources if args.sources is not None else not e.evaluation_only)]
    rows, missing, seen = [], [], set()
    for entry in chosen:
        got = rows_for(entry)
        if not got:
            missing.append(entry.package)
        kept = unique(got, seen)
        rows.extend(kept)
        again = f" ({len(got) - len(kept)} files left out: the same bytes as a file listed before)" \
            if len(kept) < len(got) else ""
        print(f"{entry.source}: {len(kept)} works{again}", file=sys.stderr)
    if missing:
        print(f"not installed or empty (skipped): {', '.join(sorted(set(missing)))}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0 if rows else 2


if __name__ == "__main__":
    sys.exit(main())
