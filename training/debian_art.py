"""Provenance files for human art shipped in Debian packages, for ``mimicry.training.external``.

Each catalogue entry names a package, the folders of drawn or painted art inside it (or the Qt resource
bundles that hold it, read by ``mimicry.training.qt_resources`` and extracted under ``data/debian_resources``)
and how its works are grouped (a group never straddles two splits). Rows carry the package, its installed version (the
``commit`` field) and its licence line from ``/usr/share/doc/<package>/copyright``, so every derived image
traces back to a file of a versioned package. Every work predates text-to-image models (the packages'
art was drawn for them by people, most of it years before 2022).

``python -m mimicry.training.debian_art --out data/debian_art.jsonl`` (packages not installed are listed
and skipped; ``make art-packages`` installs them)
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from mimicry.training.corpus import _fix_mojibake
from mimicry.training.qt_resources import read_rcc


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
    # Qt resource bundles (globs under root) whose inner files ``patterns`` then match, as GCompris ships its
    # pictures; each chosen file is written once under the extraction folder, which rows then name as
    # ``file`` (``path_in_repo`` is the bundle and the inner path). See ``mimicry.training.qt_resources``.
    resources: tuple[str, ...] = ()
    # Licences per file from the package's machine-readable copyright file: its ``Files:`` globs are matched
    # against the inner path less this prefix, extensions aside (a package converting its sources to WebP at
    # build time keeps their original names in the copyright file). The package's licence line otherwise.
    dep5_prefix: str | None = None
    # Files whose perceptual hashes (pHash, 64 bits) differ by at most this many bits share a group: one
    # photograph used by two games of a suite at two sizes must not fall on both sides of a split. Off: -1.
    near_duplicates: int = -1


# Debian's Wesnoth campaign packages (wesnoth-1.16-<short>) and the folder each installs under campaigns/.
WESNOTH_CAMPAIGNS = (
    ("did", "Descent_Into_Darkness"), ("dm", "Delfadors_Memoirs"), ("dw", "Dead_Water"), ("ei", "Eastern_Invasion"),
    ("httt", "Heir_To_The_Throne"), ("l", "Liberty"), ("low", "Legend_of_Wesmere"), ("nr", "Northern_Rebirth"),
    ("sof", "Sceptre_of_Fire"), ("sota", "Secrets_of_the_Ancients"), ("sotbe", "Son_Of_The_Black_Eye"),
    ("thot", "The_Hammer_of_Thursagan"), ("trow", "The_Rise_Of_Wesnoth"), ("tsg", "The_South_Guard"),
    ("ttb", "Two_Brothers"), ("utbs", "Under_the_Burning_Suns"),
)

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
          ("planet/exterior/*.*", "loading/*.*", "bkg/*.*"),
          "space-game landscapes, loading screens and backgrounds (painted and rendered)", group_depth=0),
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
    # Evaluation only (1.6): desktop wallpapers of two other desktops (3D-rendered abstract art, flat vector art,
    # a few photographs; both install beside MATE's and GNOME's folders) and a jigsaw game's photographs.
    Entry("other-wallpapers", "ukui-wallpapers", "/usr/share/backgrounds",
          ("calla.png", "city.png", "desert.png", "firstgeneration.jpg", "fluent-color.png", "focal-ubuntukylin.png",
           "goldfish.png", "rhythm.jpg", "rollpaper.png", "string.jpg", "the-mouse.jpg", "2004default.jpg"),
          "desktop wallpapers: 3D-rendered abstract art, flat vector art, photographs", group_depth=0,
          min_bytes=40_000, evaluation_only=True),
    Entry("other-wallpapers", "lomiri-wallpapers-20.04", "/usr/share/backgrounds", ("*_by_*.jpg",),
          "desktop wallpapers: 3D-rendered abstract art, flat vector art, photographs", group_depth=0,
          min_bytes=40_000, evaluation_only=True),
    Entry("palapeli-photos", "palapeli-data", "/usr/share/palapeli/collection", ("*.jpg",),
          "photographs of a jigsaw game (a bridge, a castle, animals, fruit)", group_depth=0, min_bytes=40_000,
          evaluation_only=True),
    # Evaluation only (1.7): a puzzle game's hand-drawn and painted underwater scenes (1998; backgrounds, wall
    # layers and the cartoon "posters" between levels), one group per level: a cartoon kind nothing here trains on.
    Entry("fillets-art", "fillets-ng-data", "/usr/share/games/fillets-ng/images", ("*/*.png",),
          "hand-drawn and painted cartoon scenes of a puzzle game", group_depth=1, min_bytes=60_000,
          licence="GPL-2+ (ALTAR Interactive; the package's copyright file)", evaluation_only=True),
    # Evaluation only (1.9): an indie role-playing game's amateur digital paintings (2007-2009, CC-BY-SA-3.0 per
    # the copyright file's Data/* stanza): story scenes, painted level backdrops, maps and character portraits,
    # each file its own work; its interface art (menus, text panels, logos, effects) stays out. Its story folder's
    # End.png is the same file as EndSave.png, so only the story copy is listed.
    Entry("ardentryst-art", "ardentryst", "/usr/share/games/ardentryst/Data",
          ("StorySceneImages/*.png", "Background_*_Backing.png", "Altar_*.png", "Map_Entarya.png",
           "Map_Sempridge.png", "Map_Snodom.png", "World_Map.png", "Portrait_*.png", "elchim.png", "snowstall.png",
           "SC_top.png"),
          "amateur digital paintings of an indie game: story scenes, backdrops, maps, portraits", group_depth=0,
          min_bytes=40_000, licence="CC-BY-SA-3.0 (the package's copyright file: Data/*)", evaluation_only=True),
    # Training data since 1.9.0 (evaluation only for 1.8.0, which flagged 3 of their 287 works, all glossy story
    # illustrations): the painted portraits and story illustrations of Wesnoth's mainline campaigns, which
    # Debian ships one package per campaign (installed into the core package's campaigns/ folder; the core
    # entries above keep to the files their own package owns). Story folders also hold a few in-game scenes
    # (the game's tiles, composed by hand). One group per campaign.
    *(Entry("wesnoth-campaign-art", f"wesnoth-1.16-{short}", "/usr/share/games/wesnoth/1.16/data",
            (f"campaigns/{folder}/images/portraits/**/*.png", f"campaigns/{folder}/images/portraits/**/*.webp",
             f"campaigns/{folder}/images/story/*.*", f"campaigns/{folder}/images/maps/*.*"),
            "painted portraits and story illustrations of a game's campaigns", group_depth=2)
      for short, folder in WESNOTH_CAMPAIGNS),
    # Training data since 1.7.0 (evaluation only for 1.4.0, which never saw them; docs/eval/realworld_notes.md):
    # kinds 1.4.0 flagged most among human works it never saw, photographs of monuments among them (11 of
    # GCompris's 49 flagged) and small painted portraits.
    # Naev's character portraits: all 200x150, painted and smooth, grouped by faction folder; stored at their own
    # size (the builder's --source-size naev-portraits=150).
    # The educational suite's photographs (monuments, wild and farm animals, instruments, objects, landscapes and
    # underwater scenes, with reproductions of Van Gogh paintings in its "details" game) and its children's-book
    # drawings, each file its own work (the photographs are by many Wikimedia Commons photographers) unless near
    # copies. Its jigsaw pieces of paintings stay out.
    Entry("naev-portraits", "naev-data", "/usr/share/naev/dat/gfx", ("portraits/**/*.*",),
          "small painted character portraits of a space game", group_depth=2),
    Entry("gcompris-photos", "gcompris-qt-data", "/usr/share/gcompris-qt/rcc",
          ("gcompris/src/activities/*/resource/**/*.webp",),
          "photographs (monuments, animals, instruments, objects, landscapes, underwater) and Van Gogh reproductions",
          group_depth=0, min_bytes=20_000, dep5_prefix="gcompris/", near_duplicates=10,
          resources=("erase.rcc", "details.rcc", "explore_monuments.rcc", "explore_world_animals.rcc",
                     "explore_farm_animals.rcc", "explore_world_music.rcc", "categorization.rcc", "clickgame.rcc")),
    Entry("gcompris-drawings", "gcompris-qt-data", "/usr/share/gcompris-qt/rcc",
          ("gcompris/src/activities/*/resource/**/*.webp",),
          "children's-book drawings: animals, people, objects and letters, inked and coloured",
          group_depth=0, min_bytes=20_000, dep5_prefix="gcompris/", near_duplicates=10,
          resources=("lang.rcc", "chronos.rcc")),
)

EXTRACT_DIR = Path("data/debian_resources")
DOC_DIR = Path("/usr/share/doc")  # each package's copyright file is DOC_DIR/<package>/copyright


def package_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


@functools.cache  # one dpkg query per package: several catalogue entries read one package
def owned_files(package: str) -> frozenset[str] | None:
    """The paths dpkg installed for ``package``; ``None`` where dpkg does not know it (then nothing is filtered).

    Packages of one game share folders (Wesnoth's campaigns each install their art under the core data
    package's ``campaigns/``), so a glob over a folder alone would credit another package's files, with its
    version and licence, to the entry's package, and installing an evaluation-only package would move files
    into a training source."""
    try:
        out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    files = frozenset(line for line in out.stdout.splitlines() if line.startswith("/"))
    return files if out.returncode == 0 and files else None


def licence_line(package: str) -> str:
    """The package's licence short names from its machine-readable copyright file."""
    path = DOC_DIR / package / "copyright"
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


def dep5_stanzas(package: str) -> list[tuple[list[str], str]]:
    """``(Files globs, licence)`` of each stanza of the package's machine-readable copyright file."""
    path = DOC_DIR / package / "copyright"
    if not path.is_file():
        return []
    stanzas = []
    for block in re.split(r"\n\s*\n", path.read_text(errors="replace")):
        files = re.search(r"^Files:[ \t]*(.*(?:\n[ \t]+.*)*)", block, re.M)
        licence = re.search(r"^License:[ \t]*(.+?)[ \t]*$", block, re.M)
        if files and licence:
            stanzas.append((files.group(1).split(), licence.group(1)))
    return stanzas


def dep5_licence(stanzas: list[tuple[list[str], str]], path: str) -> str | None:
    """The licence of the last stanza whose ``Files:`` globs match ``path`` (DEP-5: the last match wins),
    extensions aside; ``None`` when none does."""
    stem = path.rsplit(".", 1)[0]
    found = None
    for globs, licence in stanzas:
        if any(fnmatch.fnmatchcase(path, g) or fnmatch.fnmatchcase(stem, g.rsplit(".", 1)[0]) for g in globs):
            found = licence
    return found


def candidates(entry: Entry, root: Path, version: str, extract_dir: Path) -> Iterator[tuple[Path, Path, str]]:
    """``(path, relative path, path in the package)`` of each file the entry's patterns match; a file inside a
    Qt resource bundle is first written under ``extract_dir`` (once: kept while its bytes are the same)."""
    if not entry.resources:
        seen = set()  # a file two patterns match is listed once
        owned = owned_files(entry.package)
        for pattern in entry.patterns:
            for path in sorted(root.glob(pattern)):
                if owned is not None and str(path) not in owned:
                    continue  # another package's file in a shared folder
                if path not in seen and path.is_file():
                    seen.add(path)
                    yield path, path.relative_to(root), str(path)
        return
    for bundle_glob in entry.resources:
        for bundle in sorted(root.glob(bundle_glob)):
            files = read_rcc(bundle)  # a bundle's paths are unique, and each is extracted under its bundle's name
            for inner in sorted(files):
                if not any(fnmatch.fnmatchcase(inner, p) for p in entry.patterns):
                    continue
                out = extract_dir / entry.package / version / bundle.stem / inner
                if not out.is_file() or out.read_bytes() != files[inner]:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(files[inner])
                yield out, Path(inner), f"{bundle}:{inner}"


def rows_for(entry: Entry, extract_dir: Path = EXTRACT_DIR) -> list[dict]:
    version = package_version(entry.package)
    root = Path(entry.root)
    if version is None or not root.is_dir():
        return []
    licence = entry.licence or licence_line(entry.package)
    stanzas = dep5_stanzas(entry.package) if entry.dep5_prefix is not None else []
    rows, group_licences = [], {}
    # Absolute: a provenance file's relative paths are read from its own folder (mimicry.training.external).
    for path, rel, in_package in candidates(entry, root, version, extract_dir.resolve()):
        if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp"}:
            continue
        if path.stat().st_size < entry.min_bytes:
            continue
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
        if stanzas:
            row_licence = dep5_licence(stanzas, str(rel).removeprefix(entry.dep5_prefix)) or row_licence
        if NON_COMMERCIAL.search(row_licence):
            continue  # a detector others may use commercially is not trained on non-commercial licences
        rows.append({
            "file": str(path), "label": "human", "source": entry.source, **({"group": group} if group else {}),
            "repo": f"debian:{entry.package}", "commit": version, "path_in_repo": in_package,
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
    if entry.near_duplicates >= 0:
        merge_near_duplicates(rows, entry.near_duplicates)
    return rows


def merge_near_duplicates(rows: list[dict], max_bits: int) -> None:
    """Give rows whose images' pHashes differ by at most ``max_bits`` the group of the first of them (in
    place; chains join too). A file that does not decode keeps its group: the dataset builder reports it."""
    import imagehash

    hashes = {}
    for i, row in enumerate(rows):
        try:
            with Image.open(row["file"]) as im:
                hashes[i] = imagehash.phash(im.convert("RGB"))
        except Exception:
            continue
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys = sorted(hashes)
    for a_pos, a in enumerate(keys):
        for b in keys[a_pos + 1:]:
            if hashes[a] - hashes[b] <= max_bits:
                ra, rb = find(a), find(b)
                parent[max(ra, rb)] = min(ra, rb)
    for i, row in enumerate(rows):
        root = find(i)
        if root != i:
            row["group"] = rows[root].get("group", row.get("group"))


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
    p.add_argument("--with", dest="extra", nargs="*", default=[],
                   help="evaluation-only sources to add to the default choice (a candidate's training data)")
    args = p.parse_args(argv)
    if args.sources is not None and args.extra:
        p.error("--with adds to the default choice; with --sources, name every source there")
    known = {e.source for e in CATALOGUE}
    unknown = sorted((set(args.sources or []) | set(args.extra)) - known)
    if unknown:
        p.error(f"not in the catalogue: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    chosen = [e for e in CATALOGUE if (e.source in args.sources if args.sources is not None
                                       else not e.evaluation_only or e.source in args.extra)]
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
