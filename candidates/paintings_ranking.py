"""The focal-loss rule's figures, read off a leave-one-source-out run's per-image scores (runs/scores/RUN.jsonl,
written by `make loso-*`): the held-out FLUX.1 images against each museum's paintings alone (AUROC, clean), and
how many of each museum's paintings cross the run's threshold clean, after JPEG 75 and at half size, and how many
score 0.5 or more clean (a count that does not hang on the threshold). Usage, from
the repository root:

    .venv/bin/python candidates/paintings_ranking.py runs/scores/loso-c-v8-in320-freeze5-focal2*.jsonl
"""

import json
import sys

from sklearn.metrics import roc_auc_score

AI = "flux1dev-style-of"
MUSEUMS = ("met-paintings", "aic-paintings")


def figures(rows: list[dict]) -> dict:
    threshold = rows[0]["threshold"]
    out = {"threshold": round(threshold, 3)}
    for museum in MUSEUMS:
        pair = [r for r in rows if r["source"] in (AI, museum)]
        if {r["source"] for r in pair} == {AI, museum}:
            out[f"{AI} against {museum}"] = round(roc_auc_score(
                [r["source"] == AI for r in pair], [r["scores"]["clean"] for r in pair]), 4)
        paintings = [r for r in rows if r["source"] == museum]
        if paintings:
            out[f"{museum} over 0.5, clean"] = sum(r["scores"]["clean"] >= 0.5 for r in paintings)
        for condition in ("clean", "jpeg75", "resize0.5"):
            crossed = sum(r["scores"][condition] >= threshold for r in paintings)
            out[f"{museum} flagged, {condition}"] = f"{crossed} of {len(paintings)}"
    return out


if __name__ == "__main__":
    for path in sys.argv[1:]:
        rows = [json.loads(line) for line in open(path) if line.strip()]
        print(path, json.dumps(figures(rows), indent=1))
