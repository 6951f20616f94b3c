"""How often a detector flags the works of each source in provenance files, as published (no normalisation).

The question a platform asks before trusting a threshold on its own uploads: of these human works (a kind the
model may never have seen), how many come back ``ai-mimicry`` or ``uncertain``? Rows are grouped by their
``source`` field; the files are read as ``mimicry.training.external.read_provenance`` reads them (a row's
``file`` relative to its provenance file's folder).

``--condition`` also scores every file as it would be re-posted: ``jpeg75``/``jpeg50`` (decoded, then the JPEG
bytes are what the detector gets, as an upload), ``resize0.5`` (half size, bicubic); ``clean`` is the file as
published. Each condition is tallied on its own (``conditions`` in the JSON; ``sources`` stays the clean tally).
``--not-in MANIFEST`` leaves out the files a dataset holds (by their bytes' sha1, else their path), and records
the dataset's sources with training rows (``trained_sources``), so what is
left is art a model trained on that dataset never saw; ``--by-size`` also tallies every condition by the
published file's shorter side (``by_size``), the question being how the detector treats small files.

``square400webp`` is the format control for sources published as small WebP thumbnails: every file, of either
class, centre-cropped square, resized to 400 px (Lanczos) and encoded as WebP 80, so format tells no class apart.
For AI sources, ``--reference MANIFEST`` adds the human works of that dataset's test split and reports each AI
source's AUROC against them in every condition (``auroc``); ``--group-by FIELD ...`` also tallies and ranks by other
provenance fields (``generator``, ``family``).

``python -m mimicry.training.source_flags --model models/default --provenance data/new_art.jsonl --json out.json``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from mimicry.detector import Detector
from mimicry.detector.decode import DecodeError, decode_image
from mimicry.training.external import MAX_SOURCE_PIXELS, read_provenance

BOOTSTRAP = 1000  # resamples behind each AUROC's interval
CONDITIONS = ("clean", "jpeg75", "jpeg50", "resize0.5", "square400webp")


def reposted(path: str, condition: str):
    """What the detector is given for ``path`` under ``condition``: the path itself (clean), JPEG bytes, or
    a half-size image. A file that cannot be decoded is passed on as its path, so it is tallied as an error
    by the detector's own decode, the same in every condition."""
    if condition == "clean":
        return path
    try:
        image = decode_image(path, max_pixels=MAX_SOURCE_PIXELS, max_bytes=1 << 30)
    except DecodeError:
        return path
    if condition in ("jpeg75", "jpeg50"):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=int(condition[4:]))
        return buf.getvalue()
    if condition == "resize0.5":
        w, h = image.size
        return image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BICUBIC)
    if condition == "square400webp":
        w, h = image.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        buf = io.BytesIO()
        image.resize((400, 400), Image.Resampling.LANCZOS, box=box).save(buf, format="WEBP", quality=80)
        return buf.getvalue()
    raise ValueError(f"unknown condition {condition!r}; known: {CONDITIONS}")


SIZE_BINS = ((0, 128), (128, 256), (256, 384), (384, None))


def size_bin(path: str) -> str:
    """The shorter side's bin of an image file, e.g. ``128-255 px``; ``unreadable`` if its header is not."""
    try:
        with Image.open(path) as im:
            side = min(im.size)
    except Exception:
        return "unreadable"
    for low, high in SIZE_BINS:
        if side >= low and (high is None or side < high):
            return f"{low}-{high - 1} px" if high else f">= {low} px"
    raise AssertionError(side)


def held_by(manifest: Path) -> tuple[set[str], set[str]]:
    """The blobs (sha1 of the source file) and origin paths of a dataset manifest's rows."""
    blobs, paths = set(), set()
    for line in manifest.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            blobs.add(r.get("blob") or "")
            paths.update(p for p in (r.get("origin"), r.get("origin_path"), r.get("path_in_repo")) if p)
    blobs.discard("")
    return blobs, paths


def not_held(rows: list[dict], manifest: Path) -> list[dict]:
    """The provenance rows whose file a dataset manifest does not hold (by blob, path or path in its repository)."""
    blobs, paths = held_by(manifest)
    return [r for r in rows if r.get("blob") not in blobs and r["abs_path"] not in paths
            and r.get("path_in_repo") not in paths]


def trained_sources(manifest: Path) -> set[str]:
    """The sources of a dataset manifest with rows in its train split: the kinds a model trained on it has seen."""
    out = set()
    for line in manifest.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("split") == "train" and r.get("source"):
                out.add(r["source"])
    return out


def reference_rows(manifest: Path, split: str = "test") -> list[dict]:
    """The human works of a dataset's split, once per published file, as provenance rows."""
    rows, seen = [], set()
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r["split"] != split or r["label"] != "human" or r["origin_path"] in seen:
            continue
        seen.add(r["origin_path"])
        rows.append({**r, "abs_path": r["origin_path"], "source": f"reference: {split} human works"})
    return rows


def group_of(row: dict, key: str) -> str:
    """A row's value of ``key``, its source where it has none: the one grouping tallies and AUROCs share, so
    their tables line up name for name."""
    return row.get(key) or row.get("source", "?")


def aurocs(rows: list[dict], verdicts, key: str) -> dict:
    """Each AI ``key`` value's AUROC against all human rows (scores as the verdicts give them; errors left out)."""
    from sklearn.metrics import roc_auc_score

    human = [v.score for r, v in zip(rows, verdicts) if r["label"] == "human" and v.error is None]
    by = defaultdict(list)
    for r, v in zip(rows, verdicts):
        if r["label"] != "human" and v.error is None:
            by[group_of(r, key)].append(v.score)
    out = {}
    for k, s in sorted(by.items()):
        y = np.r_[np.ones(len(s)), np.zeros(len(human))]
        x = np.r_[s, human]
        auc = float(roc_auc_score(y, x)) if human else None
        ci = None
        if human and len(s) > 1:  # 95% percentile bootstrap, both classes resampled (seeded: reproducible)
            rng = np.random.default_rng(0)
            ai_i, h_i = np.arange(len(s)), np.arange(len(s), len(x))
            boot = [roc_auc_score(y[idx], x[idx]) for idx in
                    (np.r_[rng.choice(ai_i, len(ai_i)), rng.choice(h_i, len(h_i))] for _ in range(BOOTSTRAP))]
            ci = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
        out[k] = {"n": len(s), "n_human": len(human), "auroc": auc, "ci95": ci}
    return out


def tally(rows: list[dict], verdicts, key: str = "source") -> dict:
    """Per ``key`` of the rows (their source): n, the share labelled ai-mimicry and uncertain, the share labelled
    ai-mimicry by the file's metadata rather than its score (``flagged_by_metadata``), mean score, errors, the
    top-scoring files."""
    by = defaultdict(list)
    for row, v in zip(rows, verdicts):
        by[group_of(row, key)].append((row, v))
    out = {}
    for source, pairs in sorted(by.items()):
        scored = [(r, v) for r, v in pairs if v.error is None]
        labels = [v.label for _, v in scored]
        n = len(scored)
        out[source] = {
            "n": n, "errors": len(pairs) - n,
            "flagged": labels.count("ai-mimicry") / n if n else None,
            "uncertain": labels.count("uncertain") / n if n else None,
            "flagged_by_metadata": sum(v.evidence.get("label_reason", "model-score") != "model-score"
                                       for _, v in scored) / n if n else None,
            "mean_score": sum(v.score for _, v in scored) / n if n else None,
            "top": [(Path(r["abs_path"]).name, round(v.score, 4))
                    for r, v in sorted(scored, key=lambda rv: -rv[1].score)[:5]],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a model folder or a bundled model's name")
    p.add_argument("--provenance", type=Path, action="append", required=True, help="provenance JSONL (repeatable)")
    p.add_argument("--sources", nargs="*", default=None, help="only these sources")
    p.add_argument("--condition", nargs="+", choices=CONDITIONS, default=["clean"],
                   help="as published (clean) and/or re-posted; each tallied on its own")
    p.add_argument("--not-in", type=Path, action="append", default=[], metavar="MANIFEST",
                   help="leave out the files this dataset manifest holds (repeatable)")
    p.add_argument("--by-size", action="store_true", help="also tally by the published file's shorter side")
    p.add_argument("--group-by", nargs="*", default=[], metavar="FIELD",
                   help="also tally (and, with --reference, rank) by these provenance fields: generator, family")
    p.add_argument("--reference", type=Path, default=None, metavar="MANIFEST",
                   help="add the human works of this dataset's test split; report each AI source's AUROC")
    p.add_argument("--json", type=Path, default=None, help="write the tally here")
    args = p.parse_args(argv)
    rows = [r for path in args.provenance for r in read_provenance(path)
            if args.sources is None or r["source"] in args.sources]
    for manifest in args.not_in:
        before = len(rows)
        rows = not_held(rows, manifest)
        print(f"--not-in {manifest}: {before - len(rows)} of {before} files left out", file=sys.stderr)
    if not rows:
        print("no rows", file=sys.stderr)
        return 2
    if args.reference is not None:
        rows += reference_rows(args.reference)
    if args.by_size:
        for r in rows:
            r["size_bin"] = size_bin(r["abs_path"])
    detector = Detector.from_dir(args.model)
    result = {"model": f"{detector.name} {detector.version}", "threshold": detector.bundle.thresholds.ai_mimicry,
              "conditions": {}}
    for condition in dict.fromkeys(args.condition):
        verdicts = list(detector.stream(reposted(r["abs_path"], condition) for r in rows))
        result["conditions"][condition] = tally(rows, verdicts)
        if args.by_size:
            result.setdefault("by_size", {})[condition] = tally(rows, verdicts, key="size_bin")
        for field in args.group_by:
            result.setdefault(f"by_{field}", {})[condition] = tally(rows, verdicts, key=field)
        if args.reference is not None:
            result.setdefault("auroc", {})[condition] = {
                k: aurocs(rows, verdicts, k) for k in dict.fromkeys(("source", *args.group_by))}
            for k, a in result["auroc"][condition]["source"].items():
                ci = f", 95% interval {a['ci95'][0]:.3f}-{a['ci95'][1]:.3f}" if a["ci95"] else ""
                print(f"{condition:9s} {k:24s} AUROC against {a['n_human']} human works: {a['auroc']:.3f} "
                      f"(n={a['n']}{ci})")
        for kind, t in [*result["conditions"][condition].items(),
                        *result.get("by_size", {}).get(condition, {}).items()]:
            if t["n"]:
                print(f"{condition:9s} {kind:24s} n={t['n']:4d}  flagged {t['flagged']:6.1%}  "
                      f"uncertain {t['uncertain']:6.1%}  mean score {t['mean_score']:.3f}  errors {t['errors']}")
    if "clean" in result["conditions"]:
        result["sources"] = result["conditions"]["clean"]
    if args.not_in:  # so a report can tell kinds never trained on from files not held of kinds that were
        result["trained_sources"] = sorted(set().union(*(trained_sources(m) for m in args.not_in)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
