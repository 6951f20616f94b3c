"""Would scoring each image and its mirror image (mean logit) rank what a model never trained on better?

A measurement, not a product path: for each model, every file is decoded and preprocessed once, the model scores the
input and its left-right mirror, and AUROC is computed for the plain logit and for the mean of the two, with a paired
bootstrap of the difference. Pairs of (AI, human) reference sets:

- ComfyUI templates (generators no model here trained on) against the fair human reference of
  candidates/fair_reference.py and against the human art data/realworld-v9 does not hold (as
  candidates/ensemble_reference.py; run `make package-ai` and `make unseen-human` first);
- with ``--manifest``, the test split of that manifest: each AI source against all its human test works, and each
  human source's share above the threshold that keeps the model's own rate of flagged human test works (so a
  leave-one-source-out run says whether the mirror moves its never-seen kind).

Usage, from the repository root:

    .venv/bin/python candidates/flip_tta.py MODEL_DIR [MODEL_DIR...] [--manifest M] [--json OUT]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ensemble_reference import paired_bootstrap
from fair_reference import references
from mimicry.detector import Detector
from mimicry.detector.decode import DecodeError
from mimicry.detector.preprocess import preprocess
from mimicry.training.realworld_eval import load_published, published_items
from mimicry.training.source_flags import not_held, read_provenance


def logits(det: Detector, items: list[dict], batch: int = 32) -> dict[str, tuple[float, float]]:
    """{key: (logit, mirrored logit)} for every item that decodes: a reference file as the detector loads it, a
    manifest's test image as published (realworld_eval's loader)."""
    out, cache = {}, {}
    for i in range(0, len(items), batch):
        kept, xs = [], []
        for r in items[i:i + batch]:
            try:
                xs.append(preprocess(load_published(r, cache), det.config) if "origin_path" in r
                          else det.load_input(r["abs_path"]))
                kept.append(r["key"])
            except DecodeError:
                pass
        if not xs:
            continue
        x = np.stack(xs)
        plain, mirror = det.predict_arrays(x), det.predict_arrays(x[..., ::-1])
        out.update({p: (float(a), float(b)) for p, a, b in zip(kept, plain, mirror)})
    return out


def compare(ai: list[dict], human: list[dict], lg: dict) -> dict:
    rows = [r for r in ai + human if r["key"] in lg]
    y = np.array([0 if r["label"] == "human" else 1 for r in rows])
    plain = np.array([lg[r["key"]][0] for r in rows])
    both = np.array([np.mean(lg[r["key"]]) for r in rows])
    return {"n_ai": int(y.sum()), "n_human": int((y == 0).sum()),
            "auroc plain": round(roc_auc_score(y, plain), 4), "auroc mirror-mean": round(roc_auc_score(y, both), 4),
            "mirror-mean minus plain, 95% interval": paired_bootstrap(y, both, plain)}


def manifest_test(path: Path) -> list[dict]:
    rows = published_items(path, "test")
    for r in rows:
        r["key"] = f"{r['origin_path']}#{r.get('cell')}"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--manifest", type=Path, help="also score this manifest's test split, per source")
    ap.add_argument("--no-references", action="store_true", help="only the manifest's test split")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    refs, ai = {}, []
    if not args.no_references:
        refs = {"fair": references()["fair"]}
        human = [r for name in ("unseen_kinds", "debian_art", "package_art")
                 for r in read_provenance(Path(f"data/{name}.jsonl")) if r["label"] == "human"]
        refs["unseen human"] = not_held(human, Path("data/realworld-v9/manifest.jsonl"))
        ai = [r for r in read_provenance(Path("data/package_ai.jsonl")) if r["source"] == "comfyui-templates"]
    test = manifest_test(args.manifest) if args.manifest else []
    for r in (r for rows in (ai, *refs.values()) for r in rows):
        r["key"] = r["abs_path"]
    items = list({r["key"]: r for rows in (ai, test, *refs.values()) for r in rows}.values())
    out = {"models": {}}
    for model in args.models:
        det = Detector.from_dir(model)
        lg = logits(det, items)
        res = {name: compare(ai, ref, lg) for name, ref in refs.items()}
        if test:
            human = [r for r in test if r["label"] == "human"]
            for src in sorted({r["source"] for r in test if r["label"] != "human"}):
                ai_rows = [r for r in test if r["source"] == src and r["label"] != "human"]
                res[f"test {src}"] = compare(ai_rows, human, lg)
            # flagged human works per source, each way at the threshold that flags the same number of human test
            # works as the model's own threshold does on the plain logit (so the two ways spend the same budget)
            hp = np.array([lg[r["key"]][0] for r in human if r["key"] in lg])
            hb = np.array([np.mean(lg[r["key"]]) for r in human if r["key"] in lg])
            k = int((det.bundle.calibration(hp) >= det.bundle.thresholds.ai_mimicry).sum())
            tb = np.sort(hb)[::-1][k - 1] if k else np.inf
            tp = np.sort(hp)[::-1][k - 1] if k else np.inf
            flagged = {}
            for src in sorted({r["source"] for r in human}):
                s = [lg[r["key"]] for r in human if r["source"] == src and r["key"] in lg]
                flagged[src] = {"n": len(s), "plain": int(sum(a >= tp for a, _ in s)),
                                "mirror-mean": int(sum((a + b) / 2 >= tb for a, b in s))}
            aiv = [lg[r["key"]] for r in test if r["label"] != "human" and r["key"] in lg]
            res["test flagged at equal human budget"] = {
                "human flagged": k, "plain AI flagged": int(sum(a >= tp for a, _ in aiv)),
                "mirror-mean AI flagged": int(sum((a + b) / 2 >= tb for a, b in aiv)), "n_ai": len(aiv),
                "human by source": {s: v for s, v in flagged.items() if v["plain"] or v["mirror-mean"]}}
        out["models"][f"{det.name} {det.version} ({model})"] = res
        print(json.dumps({model: res}, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
