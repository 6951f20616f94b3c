#!/bin/bash
# The frozen-feature probe beside a leave-one-source-out run, in one graph, read on the pair's test split (fourteenth
# session: does the probe's lower false-alarm count hold for a museum never trained on?). After `make loso-P-v8
# SEED=S` (its run, export and scores): training.probe on the run's training split, export --probe by the
# threshold rule of the run's own export (read from its card), realworld_eval (clean, JPEG 75, half), then
# paintings_ranking on the run's scores and the graph's.
# Usage: candidates/probe-pair.sh P S (P: a or c; S: the run's seed). Resumable: each step is skipped when done.
set -euo pipefail
PAIR=${1:?pair: a or c}; SEED=${2:?the seed of the run}
cd "$(dirname "$0")/.."
PY=.venv/bin/python
NAME=loso-$PAIR-v8-in320-freeze5$([[ $SEED == 0 ]] || echo "-seed$SEED")
RUN=runs/finetune/$NAME
PROBE=runs/probe/fit-loso-$PAIR-seed$SEED
MODEL=runs/models/$NAME-probe
M=data/realworld-loso-$PAIR-v8/manifest.jsonl
test -f runs/scores/val/$NAME.jsonl || { echo "run make loso-$PAIR-v8 SEED=$SEED first" >&2; exit 1; }
# The graph is thresholded by the rule the run's own export used (its card), whatever KEEP_VAL_TPR says today.
read -r KEEP MIN_WORKS < <($PY -c "import json, sys; t = json.load(open(sys.argv[1]))['thresholds']
print(t['keep_val_tpr'], t['min_source_works'])" runs/models/$NAME/model.json)
test -f $PROBE/probe.json || $PY -m mimicry.training.probe --run $RUN --out $PROBE --views 2 --seed 0
test -f $MODEL/model.json || $PY -m mimicry.training.export --run $RUN --probe $PROBE --out $MODEL \
    --name mimicry-$NAME-probe --version 0.0.0 --threshold-at gap-top --threshold-rule per-source \
    --threshold-under jpeg75 resize0.5 --int8 --min-source-works $MIN_WORKS --keep-val-tpr $KEEP
if [[ ! -f docs/eval/$NAME-probe.json ]]; then
    rm -f runs/scores/$NAME-probe.jsonl  # realworld_eval appends to it
    $PY -m mimicry.training.realworld_eval --models $MODEL --manifest $M --perturbations clean jpeg75 resize0.5 \
        --no-tiles --json docs/eval/$NAME-probe.json --scores-out runs/scores/$NAME-probe.jsonl
fi
$PY candidates/paintings_ranking.py runs/scores/$NAME.jsonl runs/scores/$NAME-probe.jsonl
