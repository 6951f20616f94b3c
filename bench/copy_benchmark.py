"""Copies of enrolled works: recognised how often, and other works wrongly called copies how often.

Through the real API: openclipart works are enrolled with ``Registry.enrol`` (grouped by the author in
each PNG's ``Author`` chunk), then each enrolled work, transformed, is decoded as ``mimicry check``
decodes it (the style encoder's safe decode), embedded, and given to ``Registry.find_copy`` with its
copy signature. Recognised means: found as that very work. Other works (not enrolled) are asked the
same way; any copy found for them is a false copy unless it is the same picture: those are listed,
classed as pixel-identical (the two decodes are equal) or not, and drawn side by side in
``--sheet`` to be checked by eye. Works of the package's generated star series (``shapes/stars``,
17% of it: faint circles of thin lines that differ in their number of points) are counted apart too.

The threshold (``mimicry.detector.copies.COPY_DISTANCE``) was chosen on the first 1,300 works of
``random.Random(0)``'s shuffle of the package; this benchmark leaves out the first 1,400 of that order
and samples from the rest (``--seed``), so it measures on works the choice never saw.

    .venv/bin/python bench/copy_benchmark.py --enrolled 300 --others 1000 --json copy.json --sheet copies.png

Needs the Debian package openclipart-png.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mimicry.detector import copies
from mimicry.detector.decode import DecodeError
from mimicry.detector.registry import Registry
from mimicry.detector.style import StyleEncoder

OPENCLIPART = Path("/usr/share/openclipart/png")
TUNING_FILES = 1400  # the head of random.Random(0)'s order: where the threshold was chosen


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _scaled(image: Image.Image, f: float) -> Image.Image:
    return image.resize((max(1, round(image.width * f)), max(1, round(image.height * f))), Image.Resampling.BICUBIC)


def _centre(image: Image.Image, f: float) -> Image.Image:
    dx, dy = image.width * (1 - f) / 2, image.height * (1 - f) / 2
    return image.crop((round(dx), round(dy), round(image.width - dx), round(image.height - dy)))


# Each transformation takes the file's bytes and its decoded RGB (transparency on white) and gives bytes.
TRANSFORMS = {
    "exact": lambda raw, im: raw,
    "jpeg75": lambda raw, im: _save(im, "JPEG", quality=75),
    "half": lambda raw, im: _save(_scaled(im, 0.5), "PNG"),
    "jpeg50_3/4": lambda raw, im: _save(_scaled(im, 0.75), "JPEG", quality=50),
    "centre90": lambda raw, im: _save(_centre(im, 0.9), "PNG"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--enrolled", type=int, default=300, help="works to enrol")
    p.add_argument("--others", type=int, default=1000, help="works not enrolled, asked for false copies")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--encoder", default="style-encoder")
    p.add_argument("--max-pixels", type=int, default=4_000_000, help="skip larger files (time)")
    p.add_argument("--json", type=Path, help="write the figures and the settings here")
    p.add_argument("--sheet", type=Path, help="draw each false copy beside its enrolled work (PNG)")
    return p.parse_args(argv)


def sample(n: int, seed: int, max_pixels: int) -> list[Path]:
    files = sorted(OPENCLIPART.rglob("*.png"))
    random.Random(0).shuffle(files)
    rest = files[TUNING_FILES:]
    random.Random(seed).shuffle(rest)
    out = []
    for p in rest:
        with Image.open(p) as im:
            if im.width * im.height > max_pixels or min(im.size) < 16:
                continue
        out.append(p)
        if len(out) == n:
            break
    return out


def ask(reg: Registry, enc: StyleEncoder, data: bytes):
    """What `mimicry check` does with one image: decode once, embed, look for a copy (the file's own
    bytes first, as the engine does)."""
    x, image = enc.load(data)
    embedding = enc.embed_arrays(x[None])[0]
    return reg.find_copy(reg.copy_signature(image, copies.source_sha256(data)), embedding), image


def main(args: argparse.Namespace) -> dict:
    enc = StyleEncoder.from_dir(args.encoder)
    files = sample(args.enrolled + args.others, args.seed, args.max_pixels)
    to_enrol, others = files[:args.enrolled], files[args.enrolled:]
    by_author: dict[str, list[Path]] = {}
    for p in to_enrol:
        with Image.open(p) as im:
            by_author.setdefault(im.text.get("Author") or "unknown", []).append(p)
    figures: dict = {"settings": {**{k: str(v) for k, v in vars(args).items()}, "copy_distance": copies.COPY_DISTANCE,
                                  "candidate_bits": copies.CANDIDATE_BITS, "side": copies.SIDE}}
    with tempfile.TemporaryDirectory() as tmp, Registry.open(Path(tmp) / "r.sqlite3") as reg:
        t0 = time.perf_counter()
        skipped = Counter()
        for author, paths in by_author.items():
            report = reg.enrol(author, paths, enc)
            skipped.update(code for _, code, _ in report.skipped)
        enrolled = {w["source"]: w["id"] for a in reg.list_artists() for w in reg.works(a.name)}
        figures["enrolled"] = {"works": len(enrolled), "authors": len(by_author), "skipped": dict(skipped),
                               "seconds": round(time.perf_counter() - t0, 1)}
        print(f"enrolled {len(enrolled)} works of {len(by_author)} authors (skipped {dict(skipped)})", flush=True)

        recognised: dict[str, list[int]] = {t: [0, 0, 0] for t in TRANSFORMS}  # own work, another work, none
        misses = []
        times = []
        for source, work_id in enrolled.items():
            raw = Path(source).read_bytes()
            _, image = enc.load(raw)
            for name, transform in TRANSFORMS.items():
                t = time.perf_counter()
                found, _ = ask(reg, enc, transform(raw, image))
                times.append(time.perf_counter() - t)
                slot = 2 if found is None else (0 if found.work_id == work_id else 1)
                recognised[name][slot] += 1
                if slot and name in ("jpeg75", "half"):
                    misses.append((name, source, None if found is None else (found.source, round(found.distance, 3))))
        n = len(enrolled)
        figures["recognised"] = {name: {"own": c[0] / n, "other_work": c[1] / n, "none": c[2] / n, "n": n}
                                 for name, c in recognised.items()}
        figures["misses_jpeg75_half"] = misses
        for name, c in recognised.items():
            print(f"{name:11s} recognised {c[0] / n:.4f} ({c[0]}/{n}); as another work {c[1]}; not at all {c[2]}")

        false, undecodable = [], 0
        for p in others:
            try:
                found, image = ask(reg, enc, p.read_bytes())
            except DecodeError:
                undecodable += 1
                continue
            if found is not None:
                _, theirs = enc.load(Path(found.source).read_bytes())
                identical = theirs.size == image.size and np.array_equal(np.asarray(theirs), np.asarray(image))
                stars = "shapes/stars" in str(p) and "shapes/stars" in found.source
                false.append({"query": str(p), "work": found.source, "distance": round(found.distance, 4),
                              "hash_bits": found.hash_bits, "pixel_identical": bool(identical), "star_series": stars})
        asked = len(others) - undecodable
        rest = [f for f in false if not f["pixel_identical"]]
        figures["others"] = {
            "asked": asked, "called_copies": len(false), "pixel_identical": len(false) - len(rest),
            "not_identical": len(rest), "not_identical_star_series": sum(f["star_series"] for f in rest),
            "not_identical_rate": len(rest) / asked,
            "not_identical_rate_outside_star_series": sum(not f["star_series"] for f in rest) / asked,
            "list": false}
        figures["query_ms_median"] = round(1000 * float(np.median(times)), 2)
        figures["signature_ms_median"] = signature_cost(others, enc, reg)
        o = figures["others"]
        print(f"others: {asked} asked, {o['called_copies']} called copies: {o['pixel_identical']} pixel-identical "
              f"to the enrolled work, {o['not_identical']} not ({o['not_identical_star_series']} of them star series "
              f"against star series): {o['not_identical_rate']:.4f}, outside the star series "
              f"{o['not_identical_rate_outside_star_series']:.4f}")
        for f in rest:
            print(f"  {f['distance']:.3f} {f['hash_bits']:2d} bits  {f['query']}  ->  {f['work']}")
        print(f"median time per query (decode, embed, find_copy): {figures['query_ms_median']} ms")
        sc = figures["signature_ms_median"]
        print(f"median time of a query's copy signature over the works not enrolled: grey only {sc['grey']} ms, "
              f"with the colour view always {sc['colour']} ms, as Registry.copy_signature makes it (colour where "
              f"two or more works are near by hash: {sc['with_colour_share']:.1%} of them) {sc['as_queried']} ms")
    if args.sheet and rest:
        draw_sheet(rest, args.sheet)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def signature_cost(paths: list[Path], enc: StyleEncoder, reg: Registry) -> dict:
    """Median ms of ``copies.signature`` without and with the colour view and of
    ``Registry.copy_signature`` (what a query pays), alternated image by image (so all see the same
    load), over the images as a query decodes them; and the share that got a colour view."""
    times: dict[str, list[float]] = {"grey": [], "colour": [], "as_queried": []}
    coloured = 0
    for p in paths:
        try:
            _, image = enc.load(p.read_bytes())
        except DecodeError:
            continue
        for name, make in (("grey", copies.signature), ("colour", lambda im: copies.signature(im, colour=True)),
                           ("as_queried", reg.copy_signature)):
            t = time.perf_counter()
            sig = make(image)
            times[name].append(time.perf_counter() - t)
        coloured += sig.colour is not None
    out: dict = {k: round(1000 * float(np.median(v)), 2) for k, v in times.items()}
    out["with_colour_share"] = coloured / max(1, len(times["grey"]))
    return out


def draw_sheet(pairs: list[dict], path: Path, side: int = 128) -> None:
    cols = 4
    sheet = Image.new("RGB", (cols * (2 * side + 8), ((len(pairs) + cols - 1) // cols) * (side + 14)), "grey")
    draw = ImageDraw.Draw(sheet)
    for i, f in enumerate(pairs):
        x, y = (i % cols) * (2 * side + 8), (i // cols) * (side + 14)
        for j, p in enumerate((f["query"], f["work"])):
            with Image.open(p) as im:
                im = im.convert("RGBA")
                flat = Image.new("RGBA", im.size, "white")
                flat.alpha_composite(im)
                flat.thumbnail((side, side))
                sheet.paste(flat.convert("RGB"), (x + j * side, y))
        draw.text((x, y + side), f"{f['distance']:.3f} {Path(f['query']).stem[:12]}|{Path(f['work']).stem[:12]}",
                  fill="black")
    sheet.save(path)


if __name__ == "__main__":
    main(parse_args())
    sys.exit(0)
