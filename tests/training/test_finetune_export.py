"""Fine-tuning a timm backbone and exporting it: checkpoint, resume, ONNX parity, calibration, model.json."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw

from training import export, finetune


def make_dataset(root, n_per_class=8, size=48):
    """Human: shapes on a white page. Mimicry: shapes on a dark noisy page. Learnable in an epoch."""
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "val", "test"):
        for label in ("human", "ai-mimicry"):
            for i in range(n_per_class):
                if label == "human":
                    im = Image.new("RGB", (size, size), "white")
                else:
                    im = Image.fromarray(rng.integers(0, 90, (size, size, 3), dtype=np.uint8))
                d = ImageDraw.Draw(im)
                x0, y0 = rng.integers(0, size // 2, 2)
                d.ellipse([x0, y0, x0 + size // 3, y0 + size // 3], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
                path = root / split / f"{label}_{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                im.save(path)
                rows.append({"path": f"{split}/{label}_{i}.png", "label": label, "artist": "a", "split": split,
                             "sha256": "x"})
    with open(root / "manifest.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return root / "manifest.jsonl"


def ft_args(manifest, out, epochs, *extra):
    return finetune.parse_args(["--manifest", str(manifest), "--out", str(out), "--epochs", str(epochs),
                                "--input-size", "64", "--batch-size", "8", "--workers", "0", "--lr", "1e-3",
                                "--patience", "10", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    manifest = make_dataset(root)
    out = root / "run"
    result = finetune.main(ft_args(manifest, out, 2))
    return manifest, out, result


def test_finetune_writes_checkpoint_settings_history(trained):
    _, out, result = trained
    assert (out / "model.safetensors").is_file() and (out / "last" / "state.json").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["backbone"] == "tf_efficientnet_lite0" and settings["preprocess"]["size"] == 64
    assert settings["preprocess"]["mean"] == [0.5, 0.5, 0.5]  # the backbone's own normalisation
    assert len(result["history"]) == 2 and all(np.isfinite(h["train_loss"]) for h in result["history"])


def test_finetune_resumes_where_it_stopped(trained, tmp_path):
    manifest, out, result = trained
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    resumed = finetune.main(ft_args(manifest, copy, 3))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == result["history"]
    with pytest.raises(ValueError, match="lr"):
        finetune.main(ft_args(manifest, copy, 3, "--lr", "5e-4"))


def test_packaged_imagenet_weights_load_by_position():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1)
    n = finetune.load_by_position(model, finetune.packaged_lite0_weights())
    assert n == 294  # 296 tensors less the ImageNet classifier's weight and bias
    with pytest.raises(ValueError, match="not the same architecture"):
        finetune.load_by_position(timm.create_model("resnet18", pretrained=False, num_classes=1),
                                  finetune.packaged_lite0_weights())


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown timm backbone"):
        finetune.build_model("no_such_net", "none")


def test_export_parity_calibration_and_model_json(trained, tmp_path):
    manifest, run, _ = trained
    card = export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "model"), "--name", "tiny",
                                          "--trained-on", "synthetic shapes made in a test"]))
    onnx_path = tmp_path / "model" / "model.onnx"
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    assert card["metrics"]["onnx_parity_max_abs_logit_diff"] <= 1e-4
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for n in (1, 5):  # dynamic batch axis
        assert sess.run(None, {"input": np.zeros((n, 3, 64, 64), np.float32)})[0].shape == (n, 1)
    saved = json.loads((tmp_path / "model" / "model.json").read_text())
    for key in ("format_version", "backbone", "input", "calibration", "thresholds", "metrics", "training_data",
                "onnx_sha256", "libraries"):
        assert key in saved, key
    t = saved["metrics"]["test"]
    for key in ("auroc", "average_precision", "tpr_at_1pct_fpr", "accuracy_at_threshold", "ece"):
        assert 0.0 <= t[key] <= 1.0
    assert saved["thresholds"]["human_below"] <= saved["thresholds"]["ai_mimicry"]
    assert saved["metrics"]["val"]["fpr_at_threshold"] <= 0.01


def test_calibration_is_monotone_and_thresholds_bound_the_fpr():
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(-2, 1, 200), rng.normal(2, 1, 200)])
    labels = np.r_[np.zeros(200), np.ones(200)]
    a, b = export.platt_fit(logits, labels)
    grid = np.linspace(-10, 10, 401)
    assert a > 0 and np.all(np.diff(export.calibrate(grid, a, b)) >= 0)
    for fpr in (0.0, 0.01, 0.05, 0.1):
        for n in (7, 40, 300):
            human = rng.random(n)
            t = export.threshold_at_fpr(human, fpr)
            assert (human >= t).mean() <= fpr + 1e-12
    with pytest.raises(ValueError, match="slope"):
        export.platt_fit(logits, 1 - labels)


def test_max_margin_threshold_keeps_the_fpr_and_sits_mid_gap():
    human = np.array([0.01, 0.02, 0.03, 0.10])
    mimicry = np.array([0.90, 0.95, 0.99])
    t = export.max_margin_threshold(human, mimicry, 0.01)
    assert (human >= t).mean() == 0 and (mimicry >= t).all()
    assert 0.10 < t < 0.90 and abs(t - 0.5) < 0.05  # logit midpoint of 0.10 and 0.90 is 0.5
    overlapping = export.max_margin_threshold(np.array([0.2, 0.6]), np.array([0.1, 0.5, 0.7]), 0.0)
    assert 0.6 < overlapping <= 0.7
