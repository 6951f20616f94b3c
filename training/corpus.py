"""The demo corpus of real human art, from Debian's ``openclipart-png`` (public domain).

Every work in the package names its author in a PNG ``Author`` text chunk and its subject in a
``Title`` chunk; the folder it lies in is its category. This module

* catalogues the package (:func:`scan_catalogue`),
* picks demo artists with enough works and styles far apart (:func:`choose_artists`),
* normalises each work exactly as generated images are normalised (:func:`normalize_artwork`),
  so that a detector cannot learn "PNG versus JPEG" or "512 versus 500 px",
* writes the corpus with a manifest that credits every work (:func:`build_corpus`).

The corpus is rebuilt by one command rather than committed: it is deterministic given the Debian
package, and that keeps the repository small. ``python -m mimicry.training.corpus --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import re
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mimicry.detector.decode import to_rgb

OPENCLIPART_ROOT = Path("/usr/share/openclipart/png")
LICENSE = "Public domain (Open Clip Art Library, via Debian package openclipart-png)"
# Works above this are skipped when cataloguing: a few openclipart PNGs exceed 160 megapixels,
# and decoding them only to shrink them to 128 px is not worth the memory.
MAX_SOURCE_PIXELS = 24_000_000
MIN_SOURCE_SIDE = 48
# The demo artists: six authors with at least 32 usable works each and styles far apart. Picked by
# `choose_artists` (farthest-point on style features) among authors with >= 32 works, then checked
# by eye; "codifiedivining" (1,375 procedurally drawn star polygons) and Alan Horkan (mostly
# gradients the Debian exporter rendered as blank pages) were left out as not illustrators' styles.
DEMO_ARTISTS = (
    "Danny Allen",  # grey UI icons with dashed outlines
    "Nicu Buculei",  # silhouettes and cartoon animals
    "Jose Hevia",  # glossy gradient cartoons
    "Gerald G.",  # engraving-like line art
    "yves GUILLOU",  # safety signs, flat primaries
    "Benji Park",  # shaded cartoon objects
)
# Authors kept out of the tiny base model's training set too: 1,375 near-identical star polygons
# would be more than a quarter of it.
NOT_ILLUSTRATION = ("codifiedivining",)


@dataclasses.dataclass(frozen=True)
class Work:
    """One catalogued openclipart PNG."""

    path: str
    author: str
    title: str
    category: str
    width: int
    height: int

    @property
    def caption(self) -> str:
        """A caption from the title and category, as the tiny base model is trained on."""
        return caption_for(self.title, self.category)


def slugify(name: str) -> str:
    """``"Gerald G."`` -> ``"gerald_g"``: a name safe for paths and tokens."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def caption_for(title: str, category: str) -> str:
    """Make a short English caption such as ``"clip art of a red apple, fruit"``."""
    title = re.sub(r"[_\-]+", " ", title).strip().lower()
    title = re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", title)).strip()
    cat = category.replace("/", " ").replace("_", " ").replace("-", " ").strip().lower()
    parts = [p for p in (title, cat) if p]
    return "clip art of " + ", ".join(parts) if parts else "clip art"


def _fix_mojibake(text: str) -> str:
    """PNG tEXt is Latin-1 by the spec, but many authors' tools wrote UTF-8 into it."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def scan_catalogue(root: Path = OPENCLIPART_ROOT) -> tuple[list[Work], list[dict]]:
    """Catalogue every PNG under ``root``; return the usable works and the skipped ones with why."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} not found: install the Debian package openclipart-png "
            "(apt-get install openclipart-png), or pass --root"
        )
    works: list[Work] = []
    skipped: list[dict] = []
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sizes are checked below
    for path in sorted(root.rglob("*.png")):
        try:
            with Image.open(path) as im:  # lazy: reads the header and text chunks before IDAT
                info, (w, h) = dict(im.info), im.size
        except Exception as exc:  # a broken file in a public package is data, not a crash
            skipped.append({"path": str(path), "reason": f"unreadable: {exc}"})
            continue
        author = _fix_mojibake(str(info.get("Author", "")).strip())
        if not author:
            skipped.append({"path": str(path), "reason": "no Author chunk"})
            continue
        if w * h > MAX_SOURCE_PIXELS:
            skipped.append({"path": str(path), "reason": f"{w}x{h} exceeds {MAX_SOURCE_PIXELS} px"})
            continue
        if min(w, h) < MIN_SOURCE_SIDE:
            skipped.append({"path": str(path), "reason": f"{w}x{h} smaller than {MIN_SOURCE_SIDE} px"})
            continue
        category = str(path.parent.relative_to(root))
        title = _fix_mojibake(str(info.get("Title", "")).strip()) or path.stem
        works.append(Work(str(path), author, title, category, w, h))
    return works, skipped


def normalize_artwork(image: Image.Image, size: int) -> Image.Image:
    """Bring any artwork, real or generated, to the one form the dataset stores.

    EXIF orientation applied; transparency composited onto white (clip art is drawn for a white
    page); padded to a square with white, centred; resized to ``size`` x ``size`` with Lanczos;
    8-bit RGB. Generated images pass through the same function, so both classes share format,
    size and colour mode exactly.
    """
    rgb = to_rgb(ImageOps.exif_transpose(image))  # the detector's own: 16-bit grey scaled, transparency on white
    side = max(rgb.size)
    if rgb.size != (side, side):
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
        rgb = square
    if side != size:
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with no metadata chunks, the one storage format of the dataset."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def style_features(image: Image.Image) -> np.ndarray:
    """A small descriptor of drawing style on a normalised thumbnail, used only to pick artists
    far apart: colourfulness, share of white page, edge density, outline darkness, palette size."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourful = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    grey = arr.mean(axis=2)
    white = float((grey > 0.96).mean())
    dx, dy = np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0))
    edges = float((dx > 0.15).mean() + (dy > 0.15).mean())
    dark = float((grey < 0.15).mean())
    q = (arr * 7).astype(np.int32)
    palette = len(np.unique(q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2])) / 512.0
    return np.array([colourful, white, edges, dark, palette], dtype=np.float64)


def choose_artists(
    works: list[Work], n: int, min_works: int, exclude: set[str] = frozenset(), thumb: int = 64
) -> list[str]:
    """Pick ``n`` authors with at least ``min_works`` works whose styles lie far apart.

    Greedy farthest-point selection on the standardised mean :func:`style_features` of each
    candidate's works, starting from the most prolific author. Deterministic.
    """
    by_author: dict[str, list[Work]] = defaultdict(list)
    for w in works:
        by_author[w.author].append(w)
    candidates = sorted(
        (a for a, ws in by_author.items() if len(ws) >= min_works and a not in exclude),
        key=lambda a: (-len(by_author[a]), a),
    )
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} authors have >= {min_works} works; asked for {n}")
    feats = []
    for a in candidates:
        sample = sorted(by_author[a], key=lambda w: w.path)[: min_works]
        f = [style_features(normalize_artwork(Image.open(w.path), thumb)) for w in sample]
        feats.append(np.mean(f, axis=0))
    x = np.array(feats)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    chosen = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return [candidates[i] for i in chosen]


def is_blank(image: Image.Image) -> bool:
    """A normalised work with (almost) no ink, as when the exporter dropped a gradient."""
    return float(np.asarray(image, dtype=np.float32).std()) < 2.0


def build_corpus(
    out_dir: Path,
    artists: list[str],
    works: list[Work],
    size: int,
    max_works: int,
) -> list[dict]:
    """Normalise each chosen artist's works into ``out_dir/real/<slug>/`` and write
    ``out_dir/real_manifest.jsonl`` (one row per work, with credit, licence and sha256)."""
    rows = []
    for artist in artists:
        mine = sorted((w for w in works if w.author == artist), key=lambda w: w.path)
        slug = slugify(artist)
        folder = out_dir / "real" / slug
        folder.mkdir(parents=True, exist_ok=True)
        kept = 0
        for w in mine:
            if kept >= max_works:
                break
            src = Path(w.path).read_bytes()
            with Image.open(io.BytesIO(src)) as im:
                norm = normalize_artwork(im, size)
            if is_blank(norm):
                continue
            data = encode_png(norm)
            name = f"{slug}_{kept:03d}.png"
            kept += 1
            (folder / name).write_bytes(data)
            rows.append(
                {
                    "path": f"real/{slug}/{name}",
                    "label": "human",
                    "artist": artist,
                    "artist_slug": slug,
                    "title": w.title,
                    "category": w.category,
                    "caption": w.caption,
                    "source": w.path,
                    "source_sha256": sha256_bytes(src),
                    "license": LICENSE,
                    "width": size,
                    "height": size,
                    "sha256": sha256_bytes(data),
                }
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "real_manifest.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=OPENCLIPART_ROOT, help="openclipart PNG folder")
    p.add_argument("--out", type=Path, default=Path("data/demo"), help="corpus folder to write")
    p.add_argument("--artists", nargs="*", default=list(DEMO_ARTISTS), help="author names")
    p.add_argument("--choose", action="store_true", help="choose --n-artists by style distance instead")
    p.add_argument("--n-artists", type=int, default=6)
    p.add_argument("--min-works", type=int, default=32)
    p.add_argument("--max-works", type=int, default=40, help="works kept per artist")
    p.add_argument("--size", type=int, default=128, help="side of the normalised square, px")
    args = p.parse_args(argv)
    if args.max_works < args.min_works:
        p.error("--max-works must be >= --min-works")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    works, skipped = scan_catalogue(args.root)
    artists = choose_artists(works, args.n_artists, args.min_works) if args.choose else args.artists
    rows = build_corpus(args.out, artists, works, args.size, args.max_works)
    with open(args.out / "catalogue_skipped.jsonl", "w") as f:
        for s in skipped:
            f.write(json.dumps(s) + "\n")
    counts = defaultdict(int)
    for r in rows:
        counts[r["artist"]] += 1
    print(f"catalogued {len(works)} works ({len(skipped)} skipped); wrote {len(rows)} to {args.out}")
    for a, c in counts.items():
        print(f"  {a}: {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
