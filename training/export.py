"""Export a fine-tuned detector to ONNX, calibrate it, choose its threshold, and write model.json.

1. ONNX (opset 17, dynamic batch, weights inside the file), checked with ``onnx.checker``.
2. Parity: the same real images through torch and onnxruntime; max |delta logit| must be <= 1e-4.
3. Calibration on the validation split: Platt scaling (a logistic fit of label on logit), so
   ``score = sigmoid(a * logit + b)`` is a probability of AI mimicry; monotone by construction.
4. Thresholds chosen on validation human works: ``ai_mimicry`` flags at most ``--max-fpr`` (1%) of
   them (``--threshold-rule per-source``: of each source's, small sources pooled by ``--min-source-works``),
   placed mid-gap among the thresholds that flag the same images; below ``human_below`` (the mirror rule: at most ``--max-fnr``, 1%,
   of validation mimicry scores lower) a verdict is "human"; between the two, "uncertain".
5. Metrics on the test split (AUROC, AP, TPR at 1% FPR, accuracy and FPR at the threshold, ECE).
6. ``model.json`` carrying everything inference needs and everything a user should know.

With ``--int8`` the shipped graph is static int8 (per-channel weights, QDQ, activation ranges from training
images; the classifier stays float32), made after the parity check of step 2, and steps 3-5 are measured on
the int8 graph's own outputs: its calibration and thresholds are its own, not the float model's.

``python -m mimicry.training.export --run runs/finetune/demo --out models/default``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mimicry.detector.bundle import file_sha256, write_model_json
from mimicry.detector.calibration import (  # noqa: F401  (the threshold math, shared with `mimicry calibrate`)
    Calibration, choose_threshold, gap_top_threshold, max_margin_threshold, threshold_at_fpr, threshold_groups)
from mimicry.detector.preprocess import PreprocessConfig

OPSET = 17
PARITY_TOLERANCE = 1e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a training.finetune output directory")
    p.add_argument("--out", type=Path, required=True, help="model directory to write (model.onnx + model.json)")
    p.add_argument("--name", default=None, help="model name; default: the out directory's name")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--max-fpr", type=float, default=0.01, help="share of human works flagged at the threshold")
    p.add_argument("--max-fnr", type=float, default=0.01,
                   help="share of mimicry that may be called 'human' (sets the bottom of the uncertain band)")
    p.add_argument("--human-max-score", type=float, default=0.2,
                   help="never call 'human' a calibrated P(mimicry) at or above this")
    p.add_argument("--trained-on", default=None, help="one honest sentence on the training data")
    p.add_argument("--parity-images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threshold-under", nargs="*", default=[], metavar="PERTURBATION",
                   help="also hold the FPR bound on the val human works under these perturbations "
                        "(names from mimicry.training.evaluate, e.g. centre_crop50 resize0.25); clean is always in")
    p.add_argument("--threshold-at", choices=["midpoint", "gap-top"], default="midpoint",
                   help="where in the gap above the admissible thresholds: its logit midpoint, or its top "
                        "(the lowest clean val mimicry score; the most room for unseen artists' human works)")
    p.add_argument("--threshold-rule", choices=["pooled", "per-source"], default="pooled",
                   help="pooled: at most --max-fpr of all val human works flagged; per-source: of each source's "
                        "val human works (each kind of human art on its own), the highest of those thresholds")
    p.add_argument("--min-source-works", type=int, default=0, metavar="N",
                   help="per-source rule: a source with fewer than N val human works is not held to the bound on "
                        "its own (with fewer than 1/--max-fpr works the bound is 'none flagged', so one work sets "
                        "the threshold); such sources are pooled into one group held to the bound together. "
                        "0: every source on its own")
    p.add_argument("--keep-val-tpr", type=float, default=0.0, metavar="SHARE",
                   help="then raise the threshold (never lower it) as far as still flags SHARE of the clean val "
                        "mimicry (artists never trained on): the room the model has above that share goes to human "
                        "works of kinds val does not hold. 0: off")
    p.add_argument("--ensemble-with", type=Path, nargs="*", default=[], metavar="RUN",
                   help="more training.finetune runs of the same backbone, input and data: the shipped graph "
                        "averages their logits with --run's (one classifier over the trunks' joined features, "
                        "so the cost is one model per member)")
    p.add_argument("--probe", type=Path, default=None, metavar="DIR",
                   help="a training.probe fit for --run (DIR/probe.json): the shipped graph averages the run's logit "
                        "and the frozen-feature probe's, each divided by its val spread, sharing the stages the run "
                        "froze; calibration and thresholds are fitted on that mean")
    p.add_argument("--card-extra", type=Path, nargs="*", default=[],
                   help="JSON objects merged into model.json (for example the input-policy comparison)")
    p.add_argument("--int8", action="store_true",
                   help="ship a static int8 graph (per-channel int8 weights, QDQ; the classifier kept in float32); "
                        "calibration, thresholds and metrics are then measured on the int8 graph's own outputs")
    p.add_argument("--int8-calibration-images", type=int, default=200,
                   help="training images (no labels used) whose activations set the int8 ranges")
    args = p.parse_args(argv)
    if args.min_source_works < 0:
        p.error("--min-source-works must be >= 0")
    if not 0.0 <= args.keep_val_tpr <= 1.0:
        p.error("--keep-val-tpr must be in [0, 1]")
    if args.int8_calibration_images < 1:
        p.error("--int8-calibration-images must be >= 1")
    if args.probe is not None and args.ensemble_with:
        p.error("--probe and --ensemble-with cannot be combined")
    if args.probe is not None and not (args.probe / "probe.json").is_file():
        p.error(f"--probe {args.probe}: no probe.json there (fit one with python -m mimicry.training.probe)")
    return args


Forward = Callable[[np.ndarray], np.ndarray]  # a (N, 3, H, W) float32 batch -> N logits


def torch_forward(model) -> Forward:
    import torch

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x))).reshape(-1).float().numpy()
    return forward


def onnx_forward(path: Path) -> Forward:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x)})[0].reshape(-1)


INT8_VARIANT = "int8-qdq-pc"  # training.quantize's names; per channel: the most accurate static variant


def quantize_int8(onnx_path: Path, manifest: Path, cfg: PreprocessConfig, images: int,
                  keep_float: tuple[str, ...] = ()) -> dict:
    """Replace ``onnx_path`` (the exported float32 graph) by its static int8 version; return the card's
    ``quantization`` section. Activation ranges come from up to ``images`` training images (both labels,
    interleaved), preprocessed as for training, so no val or test image shapes the graph. Nodes whose whole names
    match a pattern of ``keep_float`` (regular expressions) stay float32 too (a probe's statistics: small numbers
    that one int8 range over the joined features would flatten)."""
    from mimicry.detector.decode import decode_image
    from mimicry.detector.preprocess import preprocess
    from mimicry.training import quantize

    paths = quantize.manifest_paths(manifest, "train", images)
    calib = np.stack([preprocess(decode_image(p), cfg) for p in paths])
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        shutil.copyfile(onnx_path, fp32)
        quantize.prepare(fp32, prepared)
        section = quantize.make_variant(INT8_VARIANT, prepared, fp32, onnx_path, "input", calib, "minmax",
                                        keep_float=keep_float)
        section["float32_onnx_sha256"] = file_sha256(fp32)
    section["variant"] = INT8_VARIANT
    section["calibration"]["split"] = "train"
    return section


def load_run(run: Path):
    """A training.finetune run's settings and its trained model (eval mode)."""
    from safetensors.torch import load_file

    from mimicry.training.finetune import build_model

    settings = json.loads((run / "settings.json").read_text())
    model = build_model(settings["backbone"], "none")
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    return settings, model.eval()


def mean_logit_ensemble(models: list):
    """One module whose logit is the mean of the members' logits.

    Written as a single linear classifier over the members' joined pooled features (weights w_i / n, bias the
    mean of b_i), which is the same number: so the graph still ends in one Gemm that writes the output, and
    the int8 export keeps it in float32 as it does a single model's classifier."""
    import torch

    class MeanLogit(torch.nn.Module):
        def __init__(self, members: list):
            super().__init__()
            self.members = torch.nn.ModuleList(members)
            heads = [m.get_classifier() for m in members]
            self.classifier = torch.nn.Linear(sum(h.in_features for h in heads), 1)
            with torch.no_grad():
                self.classifier.weight.copy_(torch.cat([h.weight for h in heads], dim=1) / len(heads))
                self.classifier.bias.copy_(torch.stack([h.bias for h in heads]).mean(dim=0))

        def forward(self, x):
            feats = [m.forward_head(m.forward_features(x), pre_logits=True) for m in self.members]
            return self.classifier(torch.cat(feats, dim=1))

    return MeanLogit(models).eval()


def with_probe(model, settings: dict, probe_dir: Path, manifest: Path, cfg: PreprocessConfig, batch_size: int):
    """The run's model and a training.probe fit in one module (probe.probe_beside), and the card's ``probe``
    section. The run's logit is divided by its spread on the val split (measured here, torch eager), the probe's
    by the spread recorded at its fit, so each counts alike in the mean."""
    from mimicry.training import probe as probe_mod

    fitted = json.loads((probe_dir / "probe.json").read_text())
    for key in ("backbone", "preprocess", "manifest"):
        if fitted[key] != settings[key]:
            raise ValueError(f"--probe {probe_dir}: its {key} is not --run's ({fitted[key]!r} against "
                             f"{settings[key]!r}); a probe sits only beside a run of the same backbone, input and data")
    (run_val, _), _ = split_logits(torch_forward(model), manifest, "val", cfg, batch_size)
    spread = float(run_val.std())
    combined = probe_mod.probe_beside(model, settings, fitted, spread)
    card = {"fit": str(probe_dir), "probe_json_sha256": file_sha256(probe_dir / "probe.json"),
            "features": fitted["features"], "fitted": fitted["fit"], "probe_val": fitted["val"],
            "run_val_logit_std": spread, "shared_stages": combined.shared,
            "how": "logit = (run logit / its val spread + probe logit / its val spread) / 2, one float32 linear "
                   "layer over the run's pooled features and the probe's frozen ImageNet features; the run's "
                   f"stem and first {combined.shared} stages (its frozen ImageNet weights) computed once for both; "
                   "calibration and thresholds are fitted on that mean"}
    return combined, card


def export_onnx(model, size: int, path: Path) -> None:
    """Write a self-contained ONNX file with a dynamic batch axis and check it."""
    import onnx
    import torch

    model.eval()
    dummy = torch.randn(2, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (dummy,), str(path), input_names=["input"], output_names=["logit"],
                      dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}}, opset_version=OPSET,
                      dynamo=False, do_constant_folding=True)
    # The TF-style "SAME" padding is exported as run-time arithmetic that onnxruntime cannot fuse
    # into the convolutions (15-25% of CPU per image, BENCHMARKS.md); the input size is fixed, so
    # the pads become constants. Outputs are unchanged (the parity check below covers the file).
    from mimicry.training.quantize import fold_static_padding

    onnx.save(fold_static_padding(onnx.load(str(path)), size), str(path))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise RuntimeError(f"{path} refers to external data; the model file must be self-contained")


def platt_fit(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling: (a, b) with P(mimicry) = sigmoid(a * logit + b), fit on held-out data."""
    from sklearn.linear_model import LogisticRegression

    # Regularised (C=1): on a split the model separates perfectly, an unregularised fit would push
    # the slope towards infinity and every score to 0 or 1.
    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit(logits.reshape(-1, 1), labels.astype(int))
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 0:
        raise ValueError(f"calibration slope {a:.4f} <= 0: the model's logits do not rank the validation split")
    return a, b


def calibrate(logits: np.ndarray, a: float, b: float) -> np.ndarray:
    """The scores the detector will give these logits: its own calibration (float64), not a second formula."""
    return Calibration("platt", a=a, b=b)(logits)


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(p[idx == k].mean() - y[idx == k].mean()) * (idx == k).mean()
                     for k in range(bins) if (idx == k).any()))


def metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, scores)
    flagged = scores >= threshold
    return {
        "n": int(len(y)), "n_human": int((y == 0).sum()), "n_mimicry": int((y == 1).sum()),
        "auroc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "tpr_at_1pct_fpr": float(np.max(tpr[fpr <= 0.01])) if (fpr <= 0.01).any() else 0.0,
        "accuracy_at_threshold": float(np.mean(flagged == (y == 1))),
        "fpr_at_threshold": float(flagged[y == 0].mean()),
        "tpr_at_threshold": float(flagged[y == 1].mean()),
        "ece": expected_calibration_error(scores, y),
    }


def counted_as(rows: list[dict]) -> dict:
    """What a split's ``n`` counts: stored squares. A work wider than square is stored as the squares that cover
    it, and a contact sheet as its cells, so ``n`` counts squares while ``n_works`` counts each published image
    (a file, or a sheet's cell) once, as docs/EVALUATION.md does."""
    works = {(r.get("source"), r.get("origin") or r.get("path"), json.dumps(r.get("cell"))) for r in rows}
    return {"n_works": len(works), "counted_as": "stored squares (n); n_works: published images (a file or a "
                                                 "sheet's cell) once each"}


def split_logits(forward: Forward, manifest: Path, split: str, cfg: PreprocessConfig, batch_size: int):
    from torch.utils.data import DataLoader

    from mimicry.training.finetune import ManifestDataset

    ds = ManifestDataset(manifest, split, cfg, augment="none")
    if len(ds) == 0:
        raise ValueError(f"no rows in the {split} split of {manifest}")
    logits, labels = [], []
    for x, y in DataLoader(ds, batch_size=batch_size):
        logits.append(forward(x.numpy()))
        labels.append(y.float().numpy())
    return (np.concatenate(logits), np.concatenate(labels)), ds


def perturbed_logits(forward: Forward, manifest: Path, split: str, cfg: PreprocessConfig, name: str,
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a split with one :mod:`mimicry.training.evaluate` perturbation applied to every image."""
    from mimicry.detector.decode import decode_image
    from mimicry.detector.preprocess import preprocess
    from mimicry.training.evaluate import perturbations
    from mimicry.training.finetune import LABELS, read_rows

    fn = perturbations(None)[name]
    rows = read_rows(manifest, split)
    x = np.stack([preprocess(decode_image(fn(decode_image(manifest.parent / r["path"]), i)), cfg)
                  for i, r in enumerate(rows)])
    out = [forward(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    return np.concatenate(out), np.array([LABELS[r["label"]] for r in rows])


def training_data_block(manifest: Path, data: dict, trained_on: str | None) -> dict:
    """The card's account of the training data, counted from the manifest itself (not from a summary that
    could be stale): images by split and label, and for datasets of external sources, by source with their
    generators, licences and repositories, and the groups held out of training."""
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    counts: dict[str, int] = {}
    for r in rows:
        key = f"{r['split']}/{r['label']}"
        counts[key] = counts.get(key, 0) + 1
    block = {
        "trained_on": trained_on or f"dataset {manifest.parent}",
        "manifest": str(manifest),
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "split_by": data.get("split_by"),
        "counts": dict(sorted(counts.items())),
    }
    if data.get("kind") == "external":
        sources: dict[str, dict] = {}
        for r in rows:
            s = sources.setdefault(r["source"], {"label": r["label"], "counts": {}, "generators": set(),
                                                 "licences": set(), "repositories": set()})
            s["counts"][r["split"]] = s["counts"].get(r["split"], 0) + 1
            if r.get("generator"):
                s["generators"].add(r["generator"])
            s["licences"].add(r.get("licence") or "unknown")
            s["repositories"].add(f"{r.get('repo', '')}@{r.get('commit', '')}")
        block["sources"] = {k: {**v, "generators": sorted(v["generators"]), "licences": sorted(v["licences"]),
                                "repositories": sorted(v["repositories"])} for k, v in sorted(sources.items())}
        block["groups_by_split"] = {s: len({r["group"] for r in rows if r["split"] == s}) for s in ("train", "val", "test")}
        block["holdout"] = {"sources": data.get("holdout_sources", []), "groups": data.get("holdout_groups", [])}
        block["normalisation"] = data.get("normalisation")
    else:
        block["artists_by_split"] = data.get("artists_by_split")
        block["generator"] = {"base_model": data.get("base_model"), "methods": data.get("methods")}
    return block


def main(args: argparse.Namespace) -> dict:
    import onnxruntime as ort
    import torch

    settings, model = load_run(args.run)
    cfg = PreprocessConfig.from_dict(settings["preprocess"])
    manifest = Path(settings["manifest"])
    ensemble = None
    if args.ensemble_with:
        members, seeds = [model], [settings.get("seed")]
        for run in args.ensemble_with:
            other, m = load_run(run)
            for key in ("backbone", "preprocess", "manifest"):
                if other[key] != settings[key]:
                    raise ValueError(f"--ensemble-with {run}: its {key} is not --run's ({other[key]!r} against "
                                     f"{settings[key]!r}); an ensemble's members must share backbone, input and data")
            members.append(m)
            seeds.append(other.get("seed"))
        with torch.no_grad():  # the joined classifier must give the mean of the members' logits
            x = torch.randn(2, 3, cfg.size, cfg.size)
            ref = torch.stack([m(x).reshape(-1) for m in members]).mean(dim=0)
            model = mean_logit_ensemble(members)
            if not torch.allclose(model(x).reshape(-1), ref, atol=1e-4):
                raise RuntimeError("the ensemble's classifier does not give the mean of its members' logits")
        ensemble = {"members": [str(args.run)] + [str(r) for r in args.ensemble_with],
                    "seeds": seeds,
                    "how": "the mean of the members' logits (one linear classifier over their joined pooled features); "
                           "calibration and thresholds are fitted on that mean"}
    probe_card, keep_float = None, ()
    if args.probe is not None:
        from mimicry.training.probe import FLOAT_NODES as keep_float

        model, probe_card = with_probe(model, settings, args.probe, manifest, cfg, args.batch_size)

    onnx_path = args.out / "model.onnx"
    export_onnx(model, cfg.size, onnx_path)

    # Parity on real images of the validation split.
    forward = torch_forward(model)
    (val_logits, val_y), val_ds = split_logits(forward, manifest, "val", cfg, args.batch_size)
    x = torch.stack([val_ds[i][0] for i in range(min(args.parity_images, len(val_ds)))])
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    parity = float(np.max(np.abs(ref - got)))
    if parity > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX and torch disagree: max |delta logit| {parity:.2e} > {PARITY_TOLERANCE}")
    quantization = None
    if args.int8:
        from sklearn.metrics import roc_auc_score

        # From here on every logit is the int8 graph's: the calibration, thresholds and metrics below describe
        # the file that ships. What int8 changed is measured on val against the float model.
        quantization = quantize_int8(onnx_path, manifest, cfg, args.int8_calibration_images, keep_float)
        fp32_val = val_logits
        forward = onnx_forward(onnx_path)
        (val_logits, _), _ = split_logits(forward, manifest, "val", cfg, args.batch_size)
        delta = np.abs(val_logits - fp32_val)
        quantization["against_float32_on_val"] = {
            "images": int(len(val_y)), "max_abs_delta_logit": float(delta.max()),
            "mean_abs_delta_logit": float(delta.mean()),
            "auroc_float32": float(roc_auc_score(val_y, fp32_val)), "auroc_int8": float(roc_auc_score(val_y, val_logits))}
        quantization["note"] = ("calibration, thresholds and metrics are the int8 graph's own; "
                                "metrics.onnx_parity_max_abs_logit_diff is the float32 graph's, before quantisation")

    a, b = platt_fit(val_logits, val_y)
    val_scores = calibrate(val_logits, a, b)
    human_val, mimicry_val = val_scores[val_y == 0], val_scores[val_y == 1]
    # The FPR bound may be asked to hold under perturbations too: each perturbed copy of a val work
    # counts as one more human work that must stay below the threshold (at most max_fpr of all).
    human_thr, mimicry_thr = [human_val], [mimicry_val]
    for name in args.threshold_under:
        lg, yy = perturbed_logits(forward, manifest, "val", cfg, name, args.batch_size)
        sc = calibrate(lg, a, b)
        human_thr.append(sc[yy == 0])
        mimicry_thr.append(sc[yy == 1])
    val_sources = np.array([r.get("source", "") for r in val_ds.rows])[val_y == 0]
    chosen = choose_threshold(human_thr, mimicry_thr, val_sources, max_fpr=args.max_fpr, rule=args.threshold_rule,
                              min_works=args.min_source_works, at=args.threshold_at, keep_tpr=args.keep_val_tpr)
    pooled_thr, per_source_thr, thr = chosen["pooled"], chosen["per-source"], chosen["threshold"]
    per_source, groups = chosen["per_source"], chosen["groups"]
    # The mirror rule on the other side: at most max_fnr of the val mimicry scores below human_below.
    human_below = min(thr, args.human_max_score,
                      1.0 - max_margin_threshold(1.0 - mimicry_val, 1.0 - human_val, args.max_fnr))
    (test_logits, test_y), test_ds = split_logits(forward, manifest, "test", cfg, args.batch_size)
    test_scores = calibrate(test_logits, a, b)
    test_metrics = {**metrics(test_scores, test_y, thr), **counted_as(test_ds.rows)}

    data = json.loads((manifest.parent / "dataset.json").read_text()) if (manifest.parent / "dataset.json").is_file() else {}
    history = json.loads((args.run / "history.json").read_text()) if (args.run / "history.json").is_file() else []
    import onnx
    import timm
    import sklearn

    card = {
        "format_version": 1,
        "name": args.name or args.out.name,
        "version": args.version,
        "backbone": settings["backbone"],
        "input": {"name": "input", "layout": "NCHW", "dtype": "float32", **cfg.to_dict()},
        "output": {"name": "logit", "meaning": "logit of P(ai-mimicry); calibrate before reading as a probability"},
        "calibration": {"method": "platt", "a": a, "b": b, "fit_on": "val split",
                        "formula": "score = 1 / (1 + exp(-(a * logit + b)))"},
        "thresholds": {
            "ai_mimicry": thr,
            "human_below": human_below,
            "fpr_bound_holds_on": ["clean val"] + [f"val under {n}" for n in args.threshold_under],
            "placed_at": args.threshold_at,
            "rule": args.threshold_rule,
            "alternatives": {"pooled": pooled_thr, "per-source": per_source_thr},
            "keep_val_tpr": args.keep_val_tpr,
            "keep_val_tpr_threshold": chosen["keep_tpr"],
            "per_source_val": per_source,
            "min_source_works": args.min_source_works,
            "groups_held": groups,
            "how_chosen": (f"ai_mimicry: at most {args.max_fpr:.0%} of the {int((val_y == 0).sum())} held-out (val) "
                           "human works are flagged"
                           + (", and of each source's val human works on its own (the highest of the "
                              "per-source thresholds)" if args.threshold_rule == "per-source" else "")
                           + (f"; sources with fewer than {args.min_source_works} val human works are held to "
                              "the bound pooled together, not one by one"
                              if args.threshold_rule == "per-source" and args.min_source_works else "")
                           + (f", counting each one clean and under {', '.join(args.threshold_under)} "
                              f"({len(np.concatenate(human_thr))} in all)" if args.threshold_under else "")
                           + "; among the thresholds that flag the same val images, "
                           + ("the top of the gap: the lowest clean val mimicry score above them"
                              if args.threshold_at == "gap-top" else
                              "the midpoint (in logit) of the gap to the next mimicry score")
                           + (f"; then raised (never lowered) as far as still flags {args.keep_val_tpr:.0%} of the "
                              f"{int((val_y == 1).sum())} clean val mimicry images" if args.keep_val_tpr else "")
                           + ". human_below: the mirror rule, at "
                           f"most {args.max_fnr:.0%} of the {int((val_y == 1).sum())} val mimicry images score below "
                           f"it, and never above a calibrated {args.human_max_score}. Between the two the verdict is "
                           "'uncertain'"),
        },
        "metrics": {"test": test_metrics, "val": {**metrics(val_scores, val_y, thr), **counted_as(val_ds.rows)},
                    "onnx_parity_max_abs_logit_diff": parity},
        "training_data": training_data_block(manifest, data, args.trained_on),
        "training": {"settings": {k: v for k, v in settings.items() if k != "preprocess"}, "history": history},
        "libraries": {"torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__,
                      "onnxruntime": ort.__version__, "scikit-learn": sklearn.__version__,
                      "python": platform.python_version()},
        "opset": OPSET,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if quantization is not None:
        card["quantization"] = quantization
    if ensemble is not None:
        card["ensemble"] = ensemble
    if probe_card is not None:
        card["probe"] = probe_card
    for path in args.card_extra:
        extra = json.loads(path.read_text())
        clash = sorted(set(extra) & set(card))
        if clash:
            raise ValueError(f"--card-extra {path} may not replace {clash}")
        card.update(extra)
    write_model_json(args.out, card)
    return card


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        card = main(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "test": card["metrics"]["test"], "thresholds": card["thresholds"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
