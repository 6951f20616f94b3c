"""The frozen-feature probe (training.probe) and the export that puts it beside a fine-tuned run in one graph."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from mimicry.detector.preprocess import PreprocessConfig
from mimicry.training import export, finetune, probe
from test_finetune_export import ft_args, make_dataset


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A run that froze its stem and five stages, and a probe fitted for it on two augmented views."""
    root = tmp_path_factory.mktemp("probe")
    manifest = make_dataset(root)
    run = root / "run"
    finetune.main(ft_args(manifest, run, 1, "--freeze-blocks", "5", "--augment", "realworld"))
    fit = probe.fit(run, root / "probe", views=2, log=lambda *_: None)
    return manifest, run, root / "probe", fit


def test_the_fit_is_a_standardised_logistic_regression_on_the_views_features(fitted):
    """probe.json holds what sklearn fitted on the cached features of both views: refitting on them gives the same
    numbers, and the folded linear map is its decision function."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    manifest, run, out, fit = fitted
    xs = [np.load(out / f"train-view{k}-seed0-stages1-6-head.npy") for k in range(2)]
    assert xs[0].shape == (16, probe.feature_size("tf_efficientnet_lite0")) == (16, fit["features"]["size"])
    assert not np.allclose(xs[0], xs[1])  # two draws of the augmentation, not one file read twice
    y = np.tile([r["label"] != "human" for r in finetune.read_rows(manifest, "train")], 2)
    x = np.concatenate(xs)
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=0.1, max_iter=5000, class_weight="balanced").fit(scaler.transform(x), y)
    assert np.allclose(fit["coef"], clf.coef_.reshape(-1), atol=1e-6)
    w, b = probe.probe_linear(fit)
    assert np.allclose(x.astype(np.float64) @ w + b, clf.decision_function(scaler.transform(x)), atol=1e-6)
    assert fit["features"]["stats_stages"] == [1, 6] and fit["features"]["head"] is True
    assert fit["fit"] == {"views": 2, "augment": "realworld", "seed": 0, "C": 0.1, "class_weight": "balanced",
                          "train_files": 16, "train_mimicry": 8}
    assert json.loads((out / "probe.json").read_text()) == fit


def test_the_joint_module_is_the_mean_of_the_two_scaled_logits_with_shared_stages(fitted):
    torch = pytest.importorskip("torch")
    _, run, _, fit = fitted
    settings, model = export.load_run(run)
    combined = probe.probe_beside(model, settings, fit, run_spread=2.0)
    assert combined.shared == 5
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        run_logit = export.load_run(run)[1](x).reshape(-1).double().numpy()
        feats = probe.frozen_features("tf_efficientnet_lite0")(x).double().numpy()
        got = combined(x).reshape(-1).double().numpy()
    w, b = probe.probe_linear(fit)
    want = 0.5 * run_logit / 2.0 + 0.5 * (feats @ w + b) / fit["val"]["logit_std"]
    assert np.allclose(got, want, atol=1e-3)


def test_a_probe_on_the_shared_stages_alone_runs_no_imagenet_stage_of_its_own(fitted, tmp_path):
    """Statistics of stages 1-4 without the head: all of it is computed by the run's frozen stages, so the joint
    module holds no ImageNet weights beside the run's, and still gives the mean of the two scaled logits."""
    torch = pytest.importorskip("torch")
    _, run, _, _ = fitted
    small = probe.fit(run, tmp_path / "p14", views=1, last_stage=4, head=False, log=lambda *_: None)
    assert small["features"]["size"] == 2 * (24 + 40 + 80 + 112) == probe.feature_size("tf_efficientnet_lite0", 4, False)
    assert small["features"]["stats_stages"] == [1, 4] and small["features"]["head"] is False
    settings, model = export.load_run(run)
    combined = probe.probe_beside(model, settings, small, run_spread=1.5)
    assert combined.imagenet is None
    n_run = sum(p.numel() for p in export.load_run(run)[1].parameters())
    # the run's weights and the joint last layer (1280 run features + the probe's, one bias), nothing else
    assert sum(p.numel() for p in combined.parameters()) == n_run + 1280 + small["features"]["size"] + 1
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        run_logit = export.load_run(run)[1](x).reshape(-1).double().numpy()
        feats = probe.frozen_features("tf_efficientnet_lite0", 4, False)(x).double().numpy()
        got = combined(x).reshape(-1).double().numpy()
    w, b = probe.probe_linear(small)
    assert np.allclose(got, 0.5 * run_logit / 1.5 + 0.5 * (feats @ w + b) / small["val"]["logit_std"], atol=1e-3)


def test_a_probe_shares_only_stages_the_run_left_as_imagenet(fitted):
    torch = pytest.importorskip("torch")
    _, run, _, fit = fitted
    settings, model = export.load_run(run)
    with torch.no_grad():
        model.blocks[2][0].conv_pw.weight.add_(0.01)  # as if stage 2 had been trained
    with pytest.raises(ValueError, match="differs from the packaged ImageNet weights"):
        probe.probe_beside(model, settings, fit, run_spread=1.0)
    # with nothing frozen there is nothing to share: the ImageNet branch starts from its own stem
    loose = probe.probe_beside(model, {**settings, "freeze_blocks": 0}, fit, run_spread=1.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = probe.frozen_features("tf_efficientnet_lite0")(x).double().numpy()
        got = loose.features(x)[:, 1280:].double().numpy()
    assert loose.shared == 0 and np.allclose(got, feats, atol=1e-4)


def test_export_with_a_probe_ships_one_int8_graph_with_its_statistics_in_float32(fitted, tmp_path):
    _, run, probe_dir, fit = fitted
    manifest = fitted[0]
    card = export.main(export.parse_args(["--run", str(run), "--probe", str(probe_dir), "--out", str(tmp_path / "m"),
                                          "--int8", "--int8-calibration-images", "8"]))
    p = card["probe"]
    assert p["shared_stages"] == 5 and p["fitted"]["views"] == 2 and p["run_val_logit_std"] > 0
    kept = card["quantization"]["kept_in_float32"]
    graph = onnx.load(str(tmp_path / "m" / "model.onnx")).graph
    sqrt = [n for n in graph.node if n.op_type == "Sqrt"]
    assert len(sqrt) == 6 and all(n.name in kept for n in sqrt)  # stages 1-6's standard deviations
    stats = {n.output[0] for n in sqrt} | {n.output[0] for n in graph.node if n.op_type == "ReduceMean"}
    assert not [n.name for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in stats]
    assert "/classifier/Gemm" in kept and any(n.op_type == "QuantizeLinear" for n in graph.node)  # the convs are int8
    # calibrated on the shipped graph's own outputs
    cfg = PreprocessConfig.from_dict(json.loads((run / "settings.json").read_text())["preprocess"])
    (lg, y), _ = export.split_logits(export.onnx_forward(tmp_path / "m" / "model.onnx"), manifest, "val", cfg, 8)
    assert np.allclose(export.platt_fit(lg, y), (card["calibration"]["a"], card["calibration"]["b"]), atol=1e-6)
    from mimicry.detector import Detector

    v = Detector.from_dir(tmp_path / "m").predict([str(manifest.parent / "test" / "human_0.png")])[0]
    assert v.label in ("human", "uncertain", "ai-mimicry") and 0.0 <= v.score <= 1.0


def copy_with_input_size(folder, dst, name: str, size: int):
    """A copy of ``folder`` whose JSON file ``name`` says another input size."""
    shutil.copytree(folder, dst)
    data = json.loads((dst / name).read_text())
    data["preprocess"]["size"] = size
    (dst / name).write_text(json.dumps(data))
    return dst


def test_a_probe_fitted_for_other_data_or_input_is_refused(fitted, tmp_path):
    _, run, probe_dir, _ = fitted
    odd = copy_with_input_size(probe_dir, tmp_path / "odd", "probe.json", 96)
    with pytest.raises(ValueError, match="same backbone, input and data"):
        export.main(export.parse_args(["--run", str(run), "--probe", str(odd), "--out", str(tmp_path / "x")]))
    with pytest.raises(SystemExit):
        export.parse_args(["--run", str(run), "--probe", str(probe_dir), "--ensemble-with", str(run),
                           "--out", str(tmp_path / "y")])
    with pytest.raises(SystemExit):
        export.parse_args(["--run", str(run), "--probe", str(tmp_path), "--out", str(tmp_path / "z")])


def test_fit_resumes_from_its_cached_features(fitted, monkeypatch):
    """A second fit into the same folder reads the cached features instead of extracting them again."""
    _, run, out, fit = fitted

    def no_extraction(*_a, **_k):
        return lambda batch: pytest.fail("features were extracted again although they were cached")

    monkeypatch.setattr(probe, "_extractor", no_extraction)
    again = probe.fit(run, out, views=2, log=lambda *_: None)
    assert again["coef"] == fit["coef"]


def test_fit_refuses_a_folder_of_features_made_from_other_data(fitted, tmp_path):
    """Cached features are only reused for the run's own data, input and augmentation."""
    _, run, out, _ = fitted
    other = copy_with_input_size(run, tmp_path / "other-run", "settings.json", 96)
    with pytest.raises(ValueError, match="holds features of other data"):
        probe.fit(other, out, views=2, log=lambda *_: None)
