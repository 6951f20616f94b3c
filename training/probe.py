"""A linear probe on frozen ImageNet features, made to sit beside a fine-tuned run in the shipped graph.

A fine-tuned detector learns what separates its training generators from its training human art, and some of that
is the look of those sources. Features of a backbone that never saw the task (UnivFD, Ojha et al. 2023) carry no
such fit; a linear probe on them transfers differently, so its errors and the fine-tuned model's differ. Here the
features are those of the packaged ImageNet EfficientNet, read at every depth: the pooled output of its head
convolution beside the mean and standard deviation, over the picture, of the output of every stage from the
second on (texture statistics). A standardised logistic regression (classes weighted alike) is fitted on several
views of every training file, each drawn by the run's own augmentation as one epoch of fine-tuning draws it (the
same re-encoding, crops and colour for both classes: a probe fitted on the clean files learns their look and
breaks under JPEG, docs/eval/realworld_notes.md).

``training.export --probe DIR`` then puts it beside the run in one graph (:func:`probe_beside`): when the run froze
its first stages, those are the ImageNet weights in both, so they are computed once.

    python -m mimicry.training.probe --run RUN --out DIR [--views 2] [--seed 0] [--c 0.1] [--last-stage N] [--no-head]

Writes DIR/probe.json (the probe's numbers and how it was made) and caches the features of each view under DIR
(an interrupted fit resumes from them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mimicry.detector.preprocess import PreprocessConfig

FIRST_STAT_STAGE = 1  # statistics of the outputs of stages 1..last (stage 0 is the stem's 16-channel copy)
FORMAT_VERSION = 1


def _torch():
    import torch

    return torch


def stage_statistics(h) -> list:
    """Mean and standard deviation over the picture of each channel of ``h`` (N, C, H, W): two (N, C) tensors."""
    mean = h.mean((2, 3))
    std = (h - mean[:, :, None, None]).pow(2).mean((2, 3)).add(1e-8).sqrt()
    return [mean, std]


def layout(last_stage: int, head: bool) -> dict:
    """The card's description of a probe's features: which stages' statistics, and whether the pooled head."""
    return {"stats_stages": [FIRST_STAT_STAGE, last_stage], "head": head,
            "layout": ("pooled head convolution, then " if head else "")
                      + f"the mean and standard deviation over the picture of each output of stages "
                        f"{FIRST_STAT_STAGE}-{last_stage}"}


def frozen_features(backbone: str, last_stage: int = -1, head: bool = True):
    """The packaged ImageNet model as a feature extractor (eval mode): x -> [pooled head (if ``head``), mean and std
    of the output of every stage from FIRST_STAT_STAGE to ``last_stage`` (-1: the last)]. Without the head it stops
    after ``last_stage``."""
    torch = _torch()
    from mimicry.training.finetune import build_model

    net = build_model(backbone, "packaged").eval()
    last = last_stage % len(net.blocks)
    if not FIRST_STAT_STAGE <= last:
        raise ValueError(f"last_stage must be in {FIRST_STAT_STAGE}..{len(net.blocks) - 1}, got {last_stage}")

    class FrozenFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.last, self.head = net, last, head

        def forward(self, x):
            m = self.net
            h = m.bn1(m.conv_stem(x))
            stats = []
            for i, stage in enumerate(m.blocks if self.head else m.blocks[:self.last + 1]):
                h = stage(h)
                if FIRST_STAT_STAGE <= i <= self.last:
                    stats += stage_statistics(h)
            return torch.cat(([m.bn2(m.conv_head(h)).mean((2, 3))] if self.head else []) + stats, 1)

    return FrozenFeatures().eval()


def feature_size(backbone: str, last_stage: int = -1, head: bool = True) -> int:
    torch = _torch()
    with torch.no_grad():
        return int(frozen_features(backbone, last_stage, head)(torch.zeros(1, 3, 64, 64)).shape[1])


def logistic_probe(c: float = 0.1):
    """The probe's estimator: features standardised, then a logistic regression with an L2 penalty of inverse
    strength ``c``, classes weighted alike (an sklearn pipeline, not yet fitted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, class_weight="balanced"))


def probe_linear(probe: dict) -> tuple[np.ndarray, float]:
    """The probe's decision function as one linear map on raw features: weights and bias with the standardisation
    folded in (``w / scale`` and ``b - sum(w * mean / scale)``)."""
    coef, mean, scale = (np.asarray(probe[k], dtype=np.float64) for k in ("coef", "mean", "scale"))
    return coef / scale, float(probe["intercept"] - np.sum(coef * mean / scale))


# What an int8 export keeps in float32 (training.quantize's keep_float patterns): the statistics, the frozen head's
# pooling and the joining of the features are written in ProbeBeside's own forward, so their ONNX nodes sit at the
# top level ("/ReduceMean_3"), while the blocks' nodes are "/run/blocks.5/...". Small numbers that one int8 range
# over the joined features would flatten.
FLOAT_NODES = (r"/[^/]+",)


def probe_beside(run_model, run_settings: dict, probe: dict, run_spread: float):
    """One module: the run's logit and the probe's, each divided by its val spread, averaged.

    The run's stem and first ``freeze_blocks`` stages are shared with the frozen ImageNet branch (they must be the
    ImageNet weights: checked tensor by tensor, else a ValueError); the ImageNet model's later stages run only as far
    as the probe's features need (not at all when they are statistics of shared stages alone). The last layer is a
    single linear map over the run's pooled features and the probe's features, so the graph ends in one Gemm that
    writes the logit (kept in float32 by the int8 export, as a single model's classifier is)."""
    torch = _torch()
    if probe["backbone"] != run_settings["backbone"]:
        raise ValueError(f"the probe was fitted on {probe['backbone']} features; the run is a {run_settings['backbone']}")
    last, use_head = int(probe["features"]["stats_stages"][1]), bool(probe["features"]["head"])
    imagenet = frozen_features(probe["backbone"], last, use_head).net
    shared = int(run_settings.get("freeze_blocks") or 0)
    ours = [run_model.conv_stem, run_model.bn1, *run_model.blocks[:shared]]
    theirs = [imagenet.conv_stem, imagenet.bn1, *imagenet.blocks[:shared]]
    for a, b in zip(ours, theirs):
        for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
            if ta.shape != tb.shape or not torch.equal(ta, tb):
                raise ValueError(f"the run's frozen {name} differs from the packaged ImageNet weights; "
                                 "a probe can share only stages the run left untouched")
    # the ImageNet stages the graph must run beside the run's: from the first unshared one to the last one needed
    needed = len(imagenet.blocks) if use_head else last + 1
    w_probe, b_probe = probe_linear(probe)
    head = run_model.get_classifier()
    a_run, a_probe = 0.5 / run_spread, 0.5 / float(probe["val"]["logit_std"])

    class ProbeBeside(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.run, self.shared, self.needed = run_model, shared, needed
            # kept only when the graph runs any of it (a module left unused would still be exported as weights)
            self.imagenet = imagenet if needed > shared else None
            self.classifier = torch.nn.Linear(head.in_features + w_probe.size, 1)
            with torch.no_grad():
                self.classifier.weight.copy_(torch.cat([head.weight.reshape(-1) * a_run,
                                                        torch.from_numpy(w_probe).float() * a_probe])[None])
                self.classifier.bias.fill_(float(head.bias.reshape(-1)[0]) * a_run + b_probe * a_probe)

        def features(self, x):
            r, m = self.run, self.imagenet
            h = r.bn1(r.conv_stem(x))
            g = m.bn1(m.conv_stem(x)) if self.shared == 0 and m is not None else None
            stats = []
            for i in range(len(r.blocks)):
                h = r.blocks[i](h)
                if i < self.shared:  # the same ImageNet weights in both: the run's output is the probe's
                    if FIRST_STAT_STAGE <= i <= last:
                        stats += stage_statistics(h)
                    if i == self.shared - 1:
                        g = h
                elif i < self.needed:  # (h is already the run's own output of stage i: g is the ImageNet one)
                    g = m.blocks[i](g)
                    if FIRST_STAT_STAGE <= i <= last:
                        stats += stage_statistics(g)
            pooled = r.forward_head(r.bn2(r.conv_head(h)), pre_logits=True)
            frozen_head = [m.bn2(m.conv_head(g)).mean((2, 3))] if use_head else []
            return torch.cat([pooled, *frozen_head, *stats], 1)

        def forward(self, x):
            return self.classifier(self.features(x))

    return ProbeBeside().eval()


# ----------------------------------------------------------------------------- fitting

def _extractor(features, size: int, tmp: Path):
    """``features`` (a :func:`frozen_features` module) through onnxruntime (torch eager runs this backbone several
    times slower on a CPU)."""
    import onnxruntime as ort

    torch = _torch()
    path = tmp / "features.onnx"
    torch.onnx.export(features, (torch.zeros(1, 3, size, size),), str(path),
                      input_names=["input"], output_names=["features"],
                      dynamic_axes={"input": {0: "n"}, "features": {0: "n"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"input": np.ascontiguousarray(batch, dtype=np.float32)})[0]


def split_features(extract, dataset, cache: Path, batch: int = 32, log=print) -> np.ndarray:
    """Features of every item of ``dataset`` (a finetune.ManifestDataset, its epoch set), cached in ``cache``
    (.npy, written when complete; a partial file ``cache``.part.npz lets a stopped fit resume)."""
    if cache.exists():
        got = np.load(cache)
        if got.shape[0] == len(dataset):
            return got
    part = cache.with_suffix(".part.npz")
    done = list(np.load(part)["f"]) if part.exists() else []
    start = time.monotonic()
    for i in range(len(done), len(dataset), batch):
        items = [dataset[j][0].numpy() for j in range(i, min(i + batch, len(dataset)))]
        done.extend(extract(np.stack(items)))
        if (i // batch) % 20 == 19:
            np.savez(part, f=np.stack(done))
            log(f"  {cache.name}: {len(done)}/{len(dataset)} ({len(done) / (time.monotonic() - start):.1f}/s)")
    out = np.stack(done).astype(np.float32)
    np.save(cache, out)
    part.unlink(missing_ok=True)
    return out


def fit(run: Path, out: Path, views: int = 2, seed: int = 0, c: float = 0.1, last_stage: int = -1, head: bool = True,
        log=print) -> dict:
    """Fit the probe for ``run`` (its manifest, preprocessing, augmentation and backbone) on the features
    :func:`frozen_features` gives with ``last_stage`` and ``head``, and write out/probe.json."""
    import tempfile

    from sklearn.metrics import roc_auc_score

    from mimicry.training.finetune import ManifestDataset

    if views < 1:
        raise ValueError("--views must be >= 1")
    settings = json.loads((run / "settings.json").read_text())
    manifest, backbone = Path(settings["manifest"]), settings["backbone"]
    cfg = PreprocessConfig.from_dict(settings["preprocess"])
    augment = settings.get("augment", "none")
    out.mkdir(parents=True, exist_ok=True)
    # The cached features are only valid for the data, input and augmentation they were computed from.
    made_from = {"manifest": str(manifest), "preprocess": settings["preprocess"], "augment": augment,
                 "small_sources": settings.get("small_sources", 0.0), "crops": settings.get("crops", "any"),
                 "backbone": backbone}
    meta = out / "features-made-from.json"
    if meta.exists() and json.loads(meta.read_text()) != made_from:
        raise ValueError(f"{out} holds features of other data, input or augmentation ({meta}); fit into another --out")
    meta.write_text(json.dumps(made_from, indent=1) + "\n")
    features = frozen_features(backbone, last_stage, head)
    last = features.last
    tag = f"stages{FIRST_STAT_STAGE}-{last}" + ("-head" if head else "")  # the cached features' layout
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        extract = _extractor(features, cfg.size, Path(tmp))
        train = ManifestDataset(manifest, "train", cfg, augment=augment, seed=seed,
                                small_sources=settings.get("small_sources", 0.0), crops=settings.get("crops", "any"))
        xs = []
        for k in range(views):
            train.epoch = k
            xs.append(split_features(extract, train, out / f"train-view{k}-seed{seed}-{tag}.npy", log=log))
        val = ManifestDataset(manifest, "val", cfg, augment="none")
        xv = split_features(extract, val, out / f"val-{tag}.npy", log=log)
    y = np.array([r["label"] != "human" for r in train.rows])
    yv = np.array([r["label"] != "human" for r in val.rows])
    if len(set(y)) < 2:
        raise ValueError(f"{manifest}: the train split needs both classes to fit a probe")
    fitted = logistic_probe(c).fit(np.concatenate(xs), np.tile(y, views))
    scaler, clf = fitted[0], fitted[-1]
    probe = {"kind": "linear probe", "format_version": FORMAT_VERSION, "backbone": backbone,
             "weights": "packaged ImageNet, never fine-tuned", "preprocess": settings["preprocess"],
             "manifest": str(manifest), "fitted_for_run": str(run),
             "features": {"size": int(xs[0].shape[1]), **layout(last, head)},
             "fit": {"views": views, "augment": augment, "seed": seed, "C": c, "class_weight": "balanced",
                     "train_files": len(train), "train_mimicry": int(y.sum())},
             "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
             "coef": clf.coef_.reshape(-1).tolist(), "intercept": float(clf.intercept_[0])}
    w, b = probe_linear(probe)
    val_logits = xv.astype(np.float64) @ w + b
    probe["val"] = {"images": int(len(yv)), "logit_std": float(val_logits.std()),
                    "auroc": float(roc_auc_score(yv, val_logits)) if len(set(yv)) == 2 else None}
    (out / "probe.json").write_text(json.dumps(probe, indent=1) + "\n")
    return probe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True,
                   help="the training.finetune run the probe will sit beside (its manifest, input and augmentation)")
    p.add_argument("--out", type=Path, required=True, help="directory for probe.json and the cached features")
    p.add_argument("--views", type=int, default=2, help="augmented views of each training file (one per epoch drawn)")
    p.add_argument("--seed", type=int, default=0, help="the augmentation's seed (finetune's --seed)")
    p.add_argument("--c", type=float, default=0.1, help="inverse strength of the logistic regression's L2 penalty")
    p.add_argument("--last-stage", type=int, default=-1,
                   help=f"statistics of the outputs of stages {FIRST_STAT_STAGE}..this one (-1: the last stage)")
    p.add_argument("--no-head", dest="head", action="store_false",
                   help="leave out the pooled head convolution (with --last-stage under the run's frozen stages, the "
                        "probe then costs the statistics alone: no convolution beside the run's)")
    args = p.parse_args(argv)
    if args.views < 1:
        p.error("--views must be >= 1")
    if not (args.run / "settings.json").is_file():
        p.error(f"--run {args.run}: no settings.json there (not a training.finetune run)")
    return args


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = fit(args.run, args.out, args.views, args.seed, args.c, args.last_stage, args.head)
    print(f"probe: {probe['fit']['train_files']} training files x {args.views} views; val AUROC "
          f"{probe['val']['auroc']}; wrote {args.out / 'probe.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
