"""The generators-never-trained-on figure (ComfyUI templates' AUROC against human test works) on references that
two dataset versions can share.

A dataset's test human works are a fair reference only for a model trained on that dataset's split: a model of
an older split may have trained on some of them, or on their near twins. This scores the templates against the
test human works of data/realworld-v9, of data/realworld-v8, and against the "fair" ones: test in both, and in no
group that v9 joined (so no near twin of them trained either model). Usage, from the repository root:

    .venv/bin/python candidates/fair_reference.py MODEL_DIR [MODEL_DIR...]
"""

import json
import sys
from pathlib import Path

from sklearn.metrics import roc_auc_score

from mimicry.detector import Detector
from mimicry.training.source_flags import read_provenance, reference_rows

V8, V9 = Path("data/realworld-v8"), Path("data/realworld-v9")


def references() -> dict[str, list[dict]]:
    v8, v9 = reference_rows(V8 / "manifest.jsonl"), reference_rows(V9 / "manifest.jsonl")
    merged = json.loads((V9 / "dataset.json").read_text())["merged_groups"]
    touched = set(merged) | set(merged.values())
    v8_group = {}
    for line in (V8 / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            v8_group[r["origin_path"]] = r["group"]
    v8_test = {r["origin_path"] for r in v8}
    fair = [r for r in v9 if r["origin_path"] in v8_test and r["group"] not in touched
            and v8_group.get(r["origin_path"]) not in touched]
    return {"v9 test": v9, "v8 test": v8, "fair": fair}


def main(models: list[str]) -> None:
    refs = references()
    ai = [r for r in read_provenance(Path("data/package_ai.jsonl")) if r["source"] == "comfyui-templates"]
    print({k: len(v) for k, v in refs.items()}, "human works;", len(ai), "ComfyUI templates")
    # every file once per model (the fair works are v9's and v8's too), then each reference's AUROC from the scores
    paths = list(dict.fromkeys(r["abs_path"] for rows in (ai, *refs.values()) for r in rows))
    for model in models:
        det = Detector.from_dir(model)
        score = {p: v.score for p, v in zip(paths, det.stream(paths)) if v.error is None}
        out = {}
        for name, ref in refs.items():
            kept = [(0 if r["label"] == "human" else 1, score[r["abs_path"]]) for r in ai + ref
                    if r["abs_path"] in score]
            out[name] = round(roc_auc_score([y for y, _ in kept], [s for _, s in kept]), 4)
        print(f"{det.name} {det.version} ({model}): {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
