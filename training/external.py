"""Build a real-versus-AI dataset from external sources: folders of images plus a provenance file.

A provenance file is JSONL, one row per file, in the schema of ``../shared/realworld/sources.jsonl``:
``file`` (path relative to the provenance file's folder, or absolute), ``label`` (``ai`` / ``human``),
``artist`` (the artist imitated for AI, the maker for human works), ``generator``, ``licence``, ``repo``,
``commit``, ``path_in_repo``, ``note``; optionally ``source`` and ``group``. ``mimicry.training.debian_art``
writes such files for human art shipped in Debian packages.

Every image, of either class, goes through one normalisation (:func:`normalise`): decoded by the detector's
own decoder (8-bit RGB, transparency onto white), cut into its cells when its source is a declared contact
sheet (``--sheet SOURCE=COLSxROWS``), cut into the squares that cover it along its longer side, each resized
to ``--size`` (384) with Lanczos (never upscaled: works whose shorter side is smaller are skipped and counted),
and stored as metadata-free PNG. The stored files therefore share format, shape, size and one resampling, so
nothing but the pixels' content tells the classes apart; the training augmentations (``mimicry.training.finetune --augment
realworld``) then re-encode both classes alike.

Splits never share a group between train, val and test. Groups: the imitated artist for AI images (the same
artist in two generators' sources is one group), the ``group`` field when a row has one (a picture book, a
Debian package's folder), else the artist, else the file. ``--holdout-source NAME`` leaves a source out of
training (leave-one-source-out): its rows go to test, except those whose artist is trained on through
another source, which are ``excluded``; ``--holdout-group`` puts groups in test.

``python -m mimicry.training.external --provenance ../shared/realworld/sources.jsonl --sheet
sd15-artist-prompts=2x2 --sheet flux1dev-style-of=2x2 --provenance data/debian_art.jsonl --out data/realworld``
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from mimicry.detector.decode import DecodeError, decode_image

LABELS = {"ai": "ai-mimicry", "ai-mimicry": "ai-mimicry", "human": "human"}
SPLITS = ("train", "val", "test", "excluded")
MAX_SOURCE_PIXELS = 90_000_000  # museum scans and wallpapers reach ~40 MP; the decoder's own cap is raised to this


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--provenance", type=Path, action="append", default=[],
                   help="a provenance JSONL file (repeatable); `file` paths are relative to its folder")
    p.add_argument("--resplit", type=Path, default=None, metavar="DATASET",
                   help="split an existing dataset folder anew (for example leave one source out) instead of "
                        "building one; its images are reused, not copied")
    p.add_argument("--out", type=Path, required=True, help="dataset folder: images/, manifest.jsonl, dataset.json")
    p.add_argument("--sheet", action="append", default=[], metavar="SOURCE=COLSxROWS",
                   help="the files of SOURCE are contact sheets of COLS x ROWS equal cells")
    p.add_argument("--size", type=int, default=384,
                   help="side of the stored squares; works whose shorter side is smaller are skipped")
    p.add_argument("--source-size", action="append", default=[], metavar="SOURCE=N",
                   help="another square side for one source whose images, of both classes, are all small "
                        "(the demo's 128-px works and mimicry); the same for both of its classes")
    p.add_argument("--val", type=float, default=0.15, help="share of groups in val")
    p.add_argument("--test", type=float, default=0.2, help="share of groups in test")
    p.add_argument("--holdout-source", action="append", default=[], help="a source wholly in test (repeatable)")
    p.add_argument("--holdout-group", action="append", default=[], help="a group wholly in test (repeatable)")
    p.add_argument("--assign-group", action="append", default=[], metavar="GROUP=SPLIT",
                   help="put a group in a named split instead of hashing it (repeatable), for example a source "
                        "with so few groups that hashing may leave its training split empty")
    p.add_argument("--limit", action="append", default=[], metavar="SOURCE=N",
                   help="use at most N files of SOURCE, chosen by a stable hash")
    p.add_argument("--seed", default="0", help="salt of the group hash that assigns splits")
    p.add_argument("--merge-name-variants", action="store_true",
                   help="one group for an artist whose name is written more than one way (accents, punctuation, "
                        "word order: 'M.C. Escher', 'M C Escher'), so no spelling of them lands on another side of "
                        "the split; off by default so that the datasets of shipped models (up to realworld-v8) "
                        "rebuild as they were")
    p.add_argument("--merge-near-copies", type=int, default=-1, metavar="BITS",
                   help="one group for files that show one picture (pHashes within BITS of 64, and the same "
                        "aspect, layout and colours), across sources: the same frame at two scales, one portrait "
                        "in two folders (a contact sheet is compared whole); off (any negative) by default so "
                        "that the datasets of shipped models (up to realworld-v8) rebuild as they were")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    try:
        args.sheet = dict(_parse_sheet(s) for s in args.sheet)
        args.limit = {k: int(v) for k, v in (s.split("=", 1) for s in args.limit)}
        args.source_size = {k: int(v) for k, v in (s.split("=", 1) for s in args.source_size)}
        args.assign_group = dict(s.rsplit("=", 1) for s in args.assign_group)
        bad = {v for v in args.assign_group.values() if v not in ("train", "val", "test")}
        if bad:
            raise ValueError(f"--assign-group splits must be train, val or test, got {sorted(bad)}")
    except ValueError as exc:
        p.error(str(exc))
    if bool(args.provenance) == (args.resplit is not None):
        p.error("give --provenance (build a dataset) or --resplit DATASET (split one anew), not both")
    if args.resplit is not None and (args.merge_name_variants or args.merge_near_copies >= 0):
        p.error("--resplit keeps the groups of the dataset it splits (its merges included); merge flags apply "
                "when a dataset is built")
    if not 0 <= args.val + args.test < 1:
        p.error("--val + --test must be in [0, 1)")
    if args.size < 32:
        p.error("--size must be at least 32")
    return args


def _parse_sheet(text: str) -> tuple[str, tuple[int, int]]:
    source, _, layout = text.partition("=")
    cols, _, rows = layout.lower().partition("x")
    if not (source and cols.isdigit() and rows.isdigit() and int(cols) > 0 and int(rows) > 0):
        raise ValueError(f"--sheet wants SOURCE=COLSxROWS (for example sd15=2x2), got {text!r}")
    return source, (int(cols), int(rows))


# ----------------------------------------------------------------------------- provenance


def read_provenance(path: Path) -> list[dict]:
    """Rows of a provenance file with ``file`` resolved, ``label`` normalised and ``source`` filled in.

    ``source`` defaults to the first folder of ``file`` (``sd15-artist-prompts/x.webp`` ->
    ``sd15-artist-prompts``). A row without a known label or a file is refused, naming its line.
    """
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("label") not in LABELS or not row.get("file"):
            raise ValueError(f"{path}:{n}: needs `file` and a `label` in {sorted(LABELS)}, got {row.get('label')!r}")
        rel = Path(row["file"])
        row["source"] = row.get("source") or (rel.parts[0] if len(rel.parts) > 1 else path.stem)
        row["abs_path"] = str(rel if rel.is_absolute() else (path.parent / rel).resolve())
        row["label"] = LABELS[row["label"]]
        row["provenance_file"] = str(path)
        rows.append(row)
    return rows


def norm_name(name: str) -> str:
    """Artist names as one key: NFKC, case-folded, spaces/hyphens/underscores unified."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(text.replace("_", " ").replace("-", " ").split())


def loose_name(name: str) -> str:
    """A looser key than :func:`norm_name` for names written more than one way: accents and punctuation
    dropped and the words sorted ("M.C. Escher" and "M C Escher"; "Takehiko Inoue" and "Inoue Takehiko")."""
    text = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).casefold()
    return " ".join(sorted("".join(c if c.isalnum() else " " for c in text).split()))


def merge_name_variants(rows: list[dict]) -> dict[str, str]:
    """Give the ``artist:`` groups whose names differ only as :func:`loose_name` allows one group: the smallest
    of their keys. Sets ``row['group']`` in place; returns the groups renamed (old -> new)."""
    variants: dict[str, set[str]] = {}
    for r in rows:
        if r["group"].startswith("artist:"):
            variants.setdefault(loose_name(r["group"][len("artist:"):]), set()).add(r["group"])
    renamed = {g: min(keys) for keys in variants.values() if len(keys) > 1 for g in keys if g != min(keys)}
    for r in rows:
        r["group"] = renamed.get(r["group"], r["group"])
    return renamed


@dataclasses.dataclass(frozen=True)
class Signature:
    """What :func:`merge_near_copies` compares: a 64-bit pHash (the coarse filter), the aspect ratio, and a
    16x16 RGB thumbnail as 768 bytes (the check that two files show one picture, not two similar layouts)."""
    phash: int
    aspect: float
    thumb: bytes


def file_signature(path: str) -> Signature | None:
    """The :class:`Signature` of an image file, decoded as the builder decodes it (the detector's decoder:
    transparency onto white; JPEGs at a reduced size), or ``None`` if it does not decode or is over the
    builder's pixel cap (the builder skips such files anyway). A contact sheet is signed whole, not by cell."""
    import imagehash

    try:
        image = decode_image(Path(path), max_pixels=MAX_SOURCE_PIXELS, max_bytes=1 << 30, draft_size=256)
    except (DecodeError, OSError, ValueError):
        return None
    thumb = image.resize((16, 16), Image.Resampling.BOX)
    return Signature(int(str(imagehash.phash(image)), 16), image.width / image.height, thumb.tobytes())


class _Signatures:
    """Signatures as arrays, so one row is checked against all its pHash neighbours at once."""

    def __init__(self, signatures: list[Signature]):
        self.phash = np.array([s.phash for s in signatures], dtype=np.uint64)
        self.log_aspect = np.log(np.array([s.aspect for s in signatures], dtype=np.float64))
        self.thumb = np.frombuffer(b"".join(s.thumb for s in signatures), dtype=np.uint8).reshape(
            len(signatures), -1, 3).astype(np.float32)
        grey = self.thumb.mean(axis=2)
        spread = grey.std(axis=1)
        self.blank = spread < 3
        self.zgrey = (grey - grey.mean(axis=1, keepdims=True)) / np.maximum(spread, 1e-6)[:, None]

    def matches(self, a: int, others, max_bits: int):
        """The indices among ``others`` that show the picture of row ``a``: pHashes within ``max_bits``, aspect
        ratios within 5%, and thumbnails alike in layout (grey correlation at least 0.95) and colour (mean
        difference at most 12 of 255). Blank pictures (thumbnail spread under 3) match nothing: a white canvas is
        no work to keep together, and clip art on white shares a blank pHash."""
        others = np.asarray(others, dtype=np.intp)
        if self.blank[a]:
            return others[:0]
        near = np.bitwise_count(self.phash[others] ^ self.phash[a]) <= max_bits
        near &= np.abs(self.log_aspect[others] - self.log_aspect[a]) <= 0.05
        near &= ~self.blank[others]
        c = others[near]
        corr = (self.zgrey[c] @ self.zgrey[a]) / self.zgrey.shape[1]
        colour = np.abs(self.thumb[c] - self.thumb[a]).mean(axis=(1, 2))
        return c[(corr >= 0.95) & (colour <= 12)]


def merge_near_copies(rows: list[dict], signatures: list[Signature | None], max_bits: int) -> dict[str, str]:
    """Give the groups of rows that show one picture (:meth:`_Signatures.matches`) one group, the smallest of their keys
    (chains join too), so a work stored twice (two scales, two folders, two packages) never straddles a split.
    Sets ``row['group']`` in place; returns the groups renamed (old -> new). Rows whose signature is ``None``
    keep their group."""
    known = [i for i, s in enumerate(signatures) if s is not None]
    if not known:
        return {}
    sig = _Signatures([signatures[i] for i in known])
    parent = {r["group"]: r["group"] for r in rows}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for a in np.nonzero(~sig.blank)[0][:-1]:
        for b in sig.matches(a, np.arange(a + 1, len(known)), max_bits):
            gi, gj = find(rows[known[a]]["group"]), find(rows[known[b]]["group"])
            if gi != gj:
                parent[max(gi, gj)] = min(gi, gj)
    renamed = {g: find(g) for g in parent if find(g) != g}
    for r in rows:
        r["group"] = renamed.get(r["group"], r["group"])
    return renamed


def follow_merges(renamed: dict[str, str], holdout_groups, assigned: dict[str, str] | None):
    """Held-out and assigned groups named by an old key, under their merged key; an error where the names ask
    for two splits of one group (two assignments, or a held-out group assigned to train or val)."""
    holdout = [renamed.get(g, g) for g in holdout_groups]
    out: dict[str, str] = {}
    for g, split in (assigned or {}).items():
        new = renamed.get(g, g)
        if out.setdefault(new, split) != split:
            raise ValueError(f"--assign-group puts groups merged into {new!r} in two splits "
                             f"({out[new]} and {split}, {g!r})")
        if new in holdout and split != "test":
            raise ValueError(f"--assign-group {g}={split} names a held-out group ({new!r}), which goes to test")
    return holdout, out


def group_of(row: dict) -> str:
    """The unit that never straddles two splits (see the module docstring)."""
    if row["label"] == "ai-mimicry" and row.get("artist"):
        return "artist:" + norm_name(row["artist"])
    if row.get("group"):
        return f"{row['source']}:{row['group']}"
    if row["source"] == "bookdash":  # the artist field is the credit line; the book is the folder
        return "book:" + Path(row["file"]).parts[1]
    if row.get("artist"):
        return "artist:" + norm_name(row["artist"])
    return "file:" + row["file"]


def unit_hash(key: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:12], 16) / float(1 << 48)


def assign_splits(rows: list[dict], val: float, test: float, holdout_sources=(), holdout_groups=(),
                  salt: str = "0", assigned: dict[str, str] | None = None, merge_names: bool = False,
                  near_copies: tuple[list[Signature | None], int] | None = None) -> dict:
    """Set ``row['split']`` and ``row['group']`` in place; a group's rows all land in one split.

    Held-out groups go to test, and held-out sources as :func:`split_groups` says. With ``merge_names`` an
    artist written more than one way is one group (:func:`merge_name_variants`); with ``near_copies`` (one
    signature per row, the pHash bits allowed) near copies are one group (:func:`merge_near_copies`). A
    held-out or assigned group named by any of its old keys follows its new one (two assigned groups merged
    into one must name the same split); returns the groups so renamed.
    """
    for row in rows:
        row["group"] = group_of(row)
    renamed = merge_name_variants(rows) if merge_names else {}
    if near_copies is not None:
        merged = merge_near_copies(rows, *near_copies)
        renamed = {old: merged.get(new, new) for old, new in renamed.items()} | merged
    holdout_groups, assigned = follow_merges(renamed, holdout_groups, assigned)
    split_groups(rows, val, test, holdout_sources, holdout_groups, salt, assigned)
    return renamed


def split_groups(rows: list[dict], val: float, test: float, holdout_sources=(), holdout_groups=(),
                 salt: str = "0", assigned: dict[str, str] | None = None) -> None:
    """Set ``row['split']`` from ``row['group']`` (see :func:`assign_splits`).

    Groups are hashed into train, val and test; ``holdout_groups`` go to test. A row of a held-out source
    goes to test, unless its group also has rows of other sources in train or val (an artist imitated by
    two generators): then it is ``excluded`` (neither trained on nor tested), so the test rows of a held-out
    source share neither its generator nor its artist with training.
    """
    unknown = set(holdout_sources) - {r["source"] for r in rows}
    if unknown:
        raise ValueError(f"--holdout-source names no source in the provenance: {sorted(unknown)}")
    held = set(holdout_groups)
    assigned = assigned or {}
    groups = {r["group"] for r in rows}
    unknown_groups = set(assigned) - groups
    if unknown_groups:
        raise ValueError(f"--assign-group names no group of the dataset: {sorted(unknown_groups)}")
    unknown_held = held - groups
    if unknown_held:  # a mistyped name would otherwise leave its group in training without a word
        raise ValueError(f"--holdout-group names no group of the dataset: {sorted(unknown_held)}")
    for row in rows:
        if row["group"] in held:
            row["split"] = "test"
            continue
        if row["group"] in assigned:
            row["split"] = assigned[row["group"]]
            continue
        u = unit_hash(row["group"], salt)
        row["split"] = "test" if u < test else ("val" if u < test + val else "train")
    trained = {r["group"] for r in rows if r["source"] not in holdout_sources and r["split"] in ("train", "val")}
    for row in rows:
        if row["source"] in holdout_sources:
            row["split"] = "excluded" if row["group"] in trained else "test"


def apply_limits(rows: list[dict], limits: dict[str, int], salt: str) -> list[dict]:
    """At most ``limits[source]`` files of a source, chosen by a stable hash of the file."""
    out, by_source = [], {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    for source, items in by_source.items():
        if source in limits:
            items = sorted(items, key=lambda r: unit_hash(r["file"], salt))[: limits[source]]
        out.extend(items)
    return out


# ----------------------------------------------------------------------------- normalisation


def cells(image: Image.Image, layout: tuple[int, int] | None) -> Iterator[tuple[tuple[int, int] | None, Image.Image]]:
    """The image's cells, left to right then top to bottom; the whole image when ``layout`` is None.

    A sheet whose size is not a whole multiple of its layout is refused: a cut across two pictures would put
    a seam in every cell.
    """
    if layout is None:
        yield None, image
        return
    cols, rows = layout
    w, h = image.size
    if w % cols or h % rows:
        raise ValueError(f"a {w}x{h} sheet does not divide into {cols}x{rows} equal cells")
    cw, ch = w // cols, h // rows
    for r in range(rows):
        for c in range(cols):
            yield (c, r), image.crop((c * cw, r * ch, (c + 1) * cw, (r + 1) * ch))


def square_tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Boxes of the squares, of side ``min(width, height)``, that cover the image along its longer side.

    ``round(long / short)`` squares (at least one), spread evenly from one end to the other: a 2:1 picture-book
    spread gives its two pages, a square image itself. The detector's ``tiles`` input policy scores the same boxes.
    """
    side = min(width, height)
    n = max(1, round(max(width, height) / side))
    span = max(width, height) - side
    offsets = [round(i * span / (n - 1)) for i in range(n)] if n > 1 else [span // 2]
    if width >= height:
        return [(o, 0, o + side, side) for o in offsets]
    return [(0, o, side, o + side) for o in offsets]


def normalise(image: Image.Image, size: int) -> list[Image.Image]:
    """The one stored form of every training image, human or AI: ``size`` x ``size`` RGB squares.

    8-bit RGB in (the detector's decoder gives that); the squares of :func:`square_tiles`, each resized to
    ``size`` with Lanczos. Every stored image, of either class, has been resampled once and has the same shape,
    so neither the aspect ratio nor the source's pixel grid tells the classes apart. ``ValueError`` when the
    shorter side is below ``size``: an upscaled work would look unlike anything in the other class.
    """
    if image.mode != "RGB":
        raise ValueError(f"normalise needs 8-bit RGB, got {image.mode}")
    w, h = image.size
    if min(w, h) < size:
        raise ValueError(f"{w}x{h}: shorter side under {size} px")
    return [image.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
            for box in square_tiles(w, h)]


def _process(task: tuple[dict, tuple[int, int] | None, str, int, int]) -> list[dict]:
    """Decode one provenance row, cut and normalise it, write its PNGs; rows for the manifest (or a skip)."""
    row, layout, out_dir, size = task
    out = Path(out_dir)
    base = {k: row.get(k, "") for k in ("source", "label", "artist", "generator", "licence", "repo", "commit",
                                         "path_in_repo", "blob", "note", "group", "split")}
    base["origin"] = row["file"]
    base["origin_path"] = row["abs_path"]
    try:
        image = decode_image(Path(row["abs_path"]), max_pixels=MAX_SOURCE_PIXELS, max_bytes=1 << 30)
        results = []
        for cell, part in cells(image, layout):
            try:
                squares = normalise(part, size)
            except ValueError as exc:
                results.append({**base, "cell": cell, "skipped": str(exc)})
                continue
            for k, square in enumerate(squares):
                stem = hashlib.sha256(f"{row['source']}/{row['file']}/{cell}/{k}".encode()).hexdigest()[:20]
                rel = Path("images") / row["source"] / f"{stem}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                square.save(buf, format="PNG", compress_level=3)
                tmp = out / rel.with_suffix(".tmp")
                tmp.write_bytes(buf.getvalue())
                tmp.replace(out / rel)
                results.append({**base, "cell": cell, "tile": k, "path": str(rel), "size": size,
                                "orig_width": part.width, "orig_height": part.height,
                                "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
        return results
    except (DecodeError, ValueError, OSError) as exc:
        return [{**base, "cell": None, "skipped": f"unreadable: {exc}"}]


def resplit(args: argparse.Namespace) -> dict:
    """A new split of an existing dataset (``--resplit DATASET``): same images, groups and rows, other held-out
    sources or groups; the new manifest points at the old dataset's images."""
    rows = [json.loads(x) for x in (args.resplit / "manifest.jsonl").read_text().splitlines() if x.strip()]
    old = json.loads((args.resplit / "dataset.json").read_text())
    # The old dataset's groups stand, merges included; names given by an old key follow its merged group.
    merged = old.get("merged_groups", old.get("merged_name_variants", {}))
    holdout, assigned = follow_merges(merged, args.holdout_group, args.assign_group)
    split_groups(rows, args.val, args.test, args.holdout_source, holdout, args.seed, assigned)
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = Path(os.path.relpath(args.resplit.resolve(), args.out.resolve()))
    for r in rows:
        r["path"] = str(prefix / r["path"])
    (args.out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = describe(rows, [], args)
    # describe() records no merge (merge flags are refused with --resplit): the old dataset's record stands
    summary.update({k: old[k] for k in ("merged_groups", "merged_name_variants", "merge_name_variants",
                                        "merge_near_copies_bits") if k in old})
    summary["normalisation"] = old.get("normalisation")
    summary["provenance_files"] = old.get("provenance_files")
    summary["resplit_of"] = str(args.resplit)
    (args.out / "dataset.json").write_text(json.dumps(summary, indent=2))
    return summary


def build(args: argparse.Namespace) -> dict:
    if args.resplit is not None:
        return resplit(args)
    rows = [r for p in args.provenance for r in read_provenance(p)]
    rows = apply_limits(rows, args.limit, args.seed)
    unknown_sheets = set(args.sheet) - {r["source"] for r in rows}
    if unknown_sheets:
        raise ValueError(f"--sheet names no source in the provenance: {sorted(unknown_sheets)}")
    near = None
    if args.merge_near_copies >= 0:
        with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
            near = (list(pool.map(file_signature, [r["abs_path"] for r in rows], chunksize=16)), args.merge_near_copies)
    args.renamed_groups = assign_splits(rows, args.val, args.test, args.holdout_source, args.holdout_group, args.seed,
                                        args.assign_group, merge_names=args.merge_name_variants, near_copies=near)
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [(r, args.sheet.get(r["source"]), str(args.out), args.source_size.get(r["source"], args.size))
             for r in rows]
    t0 = time.time()
    manifest, skipped = [], []
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for i, results in enumerate(pool.map(_process, tasks, chunksize=8)):
            for res in results:
                (skipped if "skipped" in res else manifest).append(res)
            if (i + 1) % 500 == 0:
                print(f"{i + 1}/{len(tasks)} files, {len(manifest)} images, {time.time() - t0:.0f} s", file=sys.stderr)
    manifest.sort(key=lambda r: r["path"])
    tmp = args.out / "manifest.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in manifest))
    tmp.replace(args.out / "manifest.jsonl")
    (args.out / "skipped.jsonl").write_text("".join(json.dumps(r) + "\n" for r in skipped))
    summary = describe(manifest, skipped, args)
    (args.out / "dataset.json").write_text(json.dumps(summary, indent=2))
    return summary


def describe(manifest: list[dict], skipped: list[dict], args: argparse.Namespace) -> dict:
    """``dataset.json``: counts by split/label and source, the groups of each split, and how it was made."""
    by_split_label = Counter(f"{r['split']}/{r['label']}" for r in manifest)
    by_source = Counter(f"{r['source']}/{r['split']}/{r['label']}" for r in manifest)
    groups = {s: sorted({r["group"] for r in manifest if r["split"] == s}) for s in SPLITS}
    return {
        "kind": "external",
        "split_by": "group (imitated artist for AI; book, folder or maker for human works)",
        "holdout_sources": list(args.holdout_source),
        "holdout_groups": list(args.holdout_group),
        "assigned_groups": dict(args.assign_group),
        # groups joined (old -> new): artists written more than one way (--merge-name-variants) and near copies
        # within the pHash bits named (--merge-near-copies); absent: neither asked for
        **({"merged_groups": getattr(args, "renamed_groups", {}),
            "merge_name_variants": bool(getattr(args, "merge_name_variants", False)),
            "merge_near_copies_bits": getattr(args, "merge_near_copies", -1)}
           if getattr(args, "merge_name_variants", False) or getattr(args, "merge_near_copies", -1) >= 0 else {}),
        "by_split_and_label": dict(sorted(by_split_label.items())),
        "by_source": dict(sorted(by_source.items())),
        "licences": dict(Counter(f"{r['source']}: {r['licence']}" for r in manifest)),
        "generators": sorted({r["generator"] for r in manifest if r["label"] == "ai-mimicry"}),
        "groups_by_split": {s: len(g) for s, g in groups.items()},
        "artists_by_split": groups,
        "skipped": dict(Counter(r["skipped"].split(":")[0] if r["skipped"].startswith("unreadable")
                                else "too small" for r in skipped)),
        "normalisation": {"size": args.size, "tiles": "round(long/short) squares of the shorter side, evenly spread",
                          "resample": "Lanczos", "stored_as": "PNG, 8-bit RGB, no metadata",
                          "sheets": {k: list(v) for k, v in args.sheet.items()}},
        "provenance_files": [str(p) for p in args.provenance],
        "base_model": None,
        "methods": ["external"],
    }


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = build(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("by_split_and_label", "groups_by_split", "skipped")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
