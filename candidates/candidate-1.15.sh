#!/bin/bash
# The 1.15 candidate: 1.10.0's run (candidates/candidate-1.10.sh 0 1.10.0b trains it again, byte for byte) with the
# frozen-feature probe beside it in one graph (training.probe, training.export --probe), exported by 1.10.0's
# flags. Judged by the rule written before its figures (docs/eval/realworld_notes.md). Resumable: each step is
# skipped when its output exists. Usage: [PROBE_SEED=N] candidates/candidate-1.15.sh [VERSION]; PROBE_SEED (default 0)
# draws the probe's views with another seed (into its own folder), the run unchanged.
set -euo pipefail
VERSION=${1:-1.15.0}
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RW=data/realworld-v8
RUN=runs/finetune/realworld-1.10.0b-seed0
PROBE_SEED=${PROBE_SEED:-0}
PROBE=runs/probe/fit-1.10.0b$([[ $PROBE_SEED == 0 ]] || echo "-seed$PROBE_SEED")
MODEL=runs/models/candidate-$VERSION-seed0
OUT=runs/candidate-$VERSION-seed0
test -f $RUN/done || { echo "train $RUN first: candidates/candidate-1.10.sh 0 1.10.0b" >&2; exit 1; }
test -f $PROBE/probe.json || $PY -m mimicry.training.probe --run $RUN --out $PROBE --views 2 --seed $PROBE_SEED
test -f $MODEL/model.json || $PY -m mimicry.training.export --run $RUN --probe $PROBE --out $MODEL \
    --name mimicry-realworld --version $VERSION --trained-on "$(cat docs/TRAINED_ON.txt)" --threshold-at gap-top \
    --threshold-rule per-source --min-source-works 100 --threshold-under jpeg75 jpeg50 resize0.5 centre_crop50 webp \
    --int8 --keep-val-tpr 0.90
# (1), (2): the v8 test split, clean, JPEG 75, half size
test -f $OUT-eval.json || $PY -m mimicry.training.realworld_eval --models $MODEL --manifest $RW/manifest.jsonl \
    --perturbations clean jpeg75 resize0.5 --no-tiles --no-baselines --json $OUT-eval.json \
    --scores-out runs/scores/candidate-$VERSION-seed0.jsonl
# (3): human art never trained on
test -f $OUT-unseen_human.json || make unseen-human MODEL=$MODEL RW=$RW UNSEEN_JSON=$OUT-unseen_human.json
# (4): the ComfyUI templates against both human references, paired bootstrap against the shipped model
test -f $OUT-templates.json || PYTHONPATH=candidates $PY candidates/ensemble_reference.py models/default $MODEL \
    --json $OUT-templates.json
# (5)
test -f $OUT-demo.txt || make demo MODEL=$MODEL > $OUT-demo.txt 2>&1
echo "candidate $VERSION done; (6), the speed, is measured on a quiet machine: bench/scan_benchmark.py"
test -f $OUT-package_ai.json || make package-ai MODEL=$MODEL RW=$RW PACKAGE_AI_JSON=$OUT-package_ai.json  # read beside the rule
