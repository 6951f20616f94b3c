"""Benchmark: what reading provenance costs the scan path, measured as a paired ratio.

One ``Detector``, the same files, ``Detector.stream`` (what ``mimicry scan`` runs) with provenance
read and with it off (``detector.provenance = False``), in alternating rounds so that a busy,
shared machine slows both alike; the figure is the median over rounds of (with / without). Three
sets of 1-megapixel files:

* ``jpeg``: plain JPEGs q90 (the scan benchmark's files: no metadata at all);
* ``jpeg+meta``: the same with EXIF (Software, a camera's) and an XMP packet holding a
  DigitalSourceType, as photos and exports carry them;
* ``png+text``: PNGs with an A1111 ``parameters`` chunk (the byte search for a C2PA box runs here).

Because a paired ratio of throughputs is still noisy on a shared machine, it also times, on one
thread and the same files, the provenance step alone (``read_provenance`` on the metadata the
decode already has) against the decode and preprocessing it rides on: ``share_of_load`` is the
fraction it adds to the per-image work before inference.

``python bench/provenance_benchmark.py --model models/default --n 100 --rounds 5``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, PngImagePlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scan_benchmark import make_jpegs  # noqa: E402

from mimicry.detector import Detector  # noqa: E402
from mimicry.detector.decode import decode_with_metadata  # noqa: E402
from mimicry.detector.preprocess import preprocess  # noqa: E402
from mimicry.detector.provenance import read_provenance  # noqa: E402

XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
       'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"/>'
       '</rdf:RDF></x:xmpmeta>')
A1111 = "a fox, watercolor\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 1024x1024"


def make_sets(folder: Path, n: int) -> dict[str, list[Path]]:
    plain = make_jpegs(folder / "jpeg", n)
    sets = {"jpeg": plain, "jpeg+meta": [], "png+text": []}
    (folder / "meta").mkdir(exist_ok=True)
    for p in plain:
        with Image.open(p) as im:
            exif = Image.Exif()
            exif[0x010F], exif[0x0110], exif[0x0131] = "Camera Maker", "Model 1", "Firmware 1.0"
            out = folder / "meta" / p.name
            im.save(out, quality=90, exif=exif, xmp=XMP.encode())
            sets["jpeg+meta"].append(out)
            info = PngImagePlugin.PngInfo()
            info.add_text("parameters", A1111)
            out = folder / "meta" / (p.stem + ".png")
            im.save(out, pnginfo=info, compress_level=1)
            sets["png+text"].append(out)
    return sets


def rate(det: Detector, paths: list[Path], provenance: bool, batch: int, workers: int) -> float:
    det.provenance = provenance
    t0 = time.perf_counter()
    n = sum(1 for _ in det.stream((str(p) for p in paths), batch_size=batch, workers=workers))
    return n / (time.perf_counter() - t0)


def step_costs(det: Detector, paths: list[Path], repeats: int = 3) -> dict:
    """Microseconds per file: decode + preprocess, and read_provenance alone (best of ``repeats``)."""
    load_us, prov_us = [], []
    for _ in range(repeats):
        decoded = []
        t0 = time.perf_counter()
        for p in paths:
            image, metadata = decode_with_metadata(str(p), draft_size=det.config.size)
            preprocess(image, det.config)
            decoded.append((str(p), metadata))
        t1 = time.perf_counter()
        for source, metadata in decoded:
            read_provenance(metadata, source)
        t2 = time.perf_counter()
        load_us.append((t1 - t0) / len(paths) * 1e6)
        prov_us.append((t2 - t1) / len(paths) * 1e6)
    load, prov = min(load_us), min(prov_us)
    return {"decode_preprocess_us": round(load, 1), "read_provenance_us": round(prov, 1),
            "share_of_load": round(prov / load, 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/default"))
    p.add_argument("--n", type=int, default=100, help="files per set")
    p.add_argument("--rounds", type=int, default=5, help="alternating with/without rounds per set")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--scratch", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args(argv)

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="mimicry-prov-bench-"))
    sets = make_sets(scratch, args.n)
    det = Detector.from_dir(args.model)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "files_per_set": args.n, "rounds": args.rounds, "batch_size": args.batch_size,
              "workers": args.workers, "sets": {}}
    for name, paths in sets.items():
        rate(det, paths[:16], True, args.batch_size, args.workers)  # warm-up: page cache, c2pa/defusedxml imports
        with_, without = [], []
        for r in range(args.rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            for flag in order:
                (with_ if flag else without).append(rate(det, paths, flag, args.batch_size, args.workers))
        ratios = [a / b for a, b in zip(with_, without)]
        result["sets"][name] = {"with_provenance_img_s": round(statistics.median(with_), 1),
                                "without_img_s": round(statistics.median(without), 1),
                                "ratio_median": round(statistics.median(ratios), 3),
                                "ratios": [round(x, 3) for x in ratios],
                                **step_costs(det, paths)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
