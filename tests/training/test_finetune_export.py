"""Fine-tuning a timm backbone and exporting it: checkpoint, resume, ONNX parity, calibration, model.json."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw

from mimicry.training import export, finetune


def make_dataset(root, n_per_class=8, size=128):  # 128: a quarter of it is still >= MIN_SIDE
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


def test_source_balance_flattens_sources_and_keeps_the_class_shares():
    labels = [0] * 100 + [0] * 4 + [1] * 50
    sources = ["clipart"] * 100 + ["paintings"] * 4 + ["sd15"] * 50
    w = finetune.source_balanced_weights(labels, sources)
    assert w[:104].sum() == pytest.approx(104) and w[104:].sum() == pytest.approx(50)
    # per source: mass in proportion to sqrt(rows), so the 4 paintings get 2/12 of the human draws, not 4/104
    assert w[100:104].sum() / w[:104].sum() == pytest.approx(2 / 12)
    assert np.allclose(w[104:], 1.0)  # one source in a class: every row once, as without balance


def test_focal_loss_is_weighted_cross_entropy_that_discounts_easy_examples():
    import torch

    logit = torch.tensor([4.0, -4.0, 0.5, -0.5, 2.0])  # two easy, two hard, one easy positive
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    pos_weight = torch.tensor(1.7)
    plain = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)(logit, y)
    assert finetune.focal_loss(pos_weight, 0.0)(logit, y).item() == pytest.approx(plain.item(), rel=1e-6)
    # each example: its weighted cross-entropy times (1 - p_true)^2
    each = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")(logit, y)
    p_true = torch.where(y == 1, torch.sigmoid(logit), 1 - torch.sigmoid(logit))
    focal = finetune.focal_loss(pos_weight, 2.0)
    assert focal(logit, y).item() == pytest.approx(((1 - p_true) ** 2 * each).mean().item(), rel=1e-6)
    # an easy example loses far more of its weight than a hard one
    easy, hard = focal(logit[:1], y[:1]) / each[0], focal(logit[2:3], y[2:3]) / each[2]
    assert easy < 1e-3 and hard > 0.3


@pytest.mark.parametrize("flag, key, value, resume_with, out_of_range", [
    ("--focal-gamma", "focal_gamma", 2.0, "2", "-1"), ("--cutmix", "cutmix", 1.0, "0.5", "1.5")], ids=["focal", "cutmix"])
def test_a_run_with_a_training_option_records_it_and_is_its_own_run(trained, tmp_path, flag, key, value, resume_with,
                                                                      out_of_range):
    manifest, out, _ = trained
    result = finetune.main(ft_args(manifest, tmp_path / key, 1, flag, str(value)))
    assert np.isfinite(result["history"][0]["train_loss"])
    assert json.loads((tmp_path / key / "settings.json").read_text())[key] == value
    import shutil

    shutil.copytree(out, tmp_path / "old")
    with pytest.raises(ValueError, match=key):  # a run without the option is not resumed with it
        finetune.main(ft_args(manifest, tmp_path / "old", 3, flag, resume_with))
    with pytest.raises(SystemExit):
        finetune.parse_args(["--manifest", "m", "--out", "o", flag, out_of_range])


def test_a_run_is_not_resumed_with_another_hue_range(trained, tmp_path):
    manifest, out, _ = trained
    import shutil

    shutil.copytree(out, tmp_path / "old")  # trained with the default range, 0.08
    with pytest.raises(ValueError, match="hue"):
        finetune.main(ft_args(manifest, tmp_path / "old", 3, "--augment", "realworld", "--hue", "0.3"))


def test_cutmix_labels_each_image_by_the_share_of_its_area_from_mimicry():
    import torch

    mix = finetune.cutmix_batches(1.0)
    np.random.seed(0)
    # human images all 0, mimicry all 1, alternating: every image's partner (the batch reversed) is of the other class
    y = torch.tensor([0.0, 1.0] * 4)
    x = y.view(-1, 1, 1, 1).expand(8, 3, 32, 32).contiguous()
    mixed_any = False
    for _ in range(6):
        xm, ym = mix(x.clone(), y.clone())
        assert ym.dtype == y.dtype and ym.shape == y.shape
        # each label is the share of the image's pixels that came from a mimicry image: the pixel mean here
        assert torch.allclose(xm.mean(dim=(1, 2, 3)), ym, atol=1e-6)
        mixed_any |= bool(((ym > 0) & (ym < 1)).any())
    assert mixed_any
    xo, yo = mix(x[:7].clone(), y[:7].clone())  # odd batches (timm pairs by mirror position) pass unchanged
    assert torch.equal(xo, x[:7]) and torch.equal(yo, y[:7])


def test_a_weight_average_run_selects_saves_and_resumes_the_average(trained, tmp_path):
    manifest, out, result = trained
    from safetensors.numpy import load_file

    run = tmp_path / "ema"
    first = finetune.main(ft_args(manifest, run, 1, "--ema-decay", "0.999"))
    h = first["history"][0]
    # the raw weights train exactly as in the plain run (the average is a copy on the side) ...
    assert h["raw_val_loss"] == pytest.approx(result["history"][0]["val_loss"], rel=1e-5)
    assert h["train_loss"] == pytest.approx(result["history"][0]["train_loss"], rel=1e-5)
    # ... and what is validated, selected and saved is the average, which is not the raw weights
    assert h["ema_steps"] == 2 and h["val_loss"] != pytest.approx(h["raw_val_loss"], rel=1e-3)
    saved, averaged = load_file(run / "model.safetensors"), load_file(run / "last" / "ema.safetensors")
    raw = load_file(run / "last" / "model.safetensors")
    assert all(np.array_equal(saved[k], averaged[k]) for k in saved)
    assert any(not np.array_equal(saved[k], raw[k]) for k in saved if saved[k].dtype.kind == "f")
    # the average follows the weights it is given: after one step it is those weights, exactly
    one = tmp_path / "one_step"
    finetune.main(ft_args(manifest, one, 1, "--ema-decay", "0.999", "--max-train-batches", "1"))
    saved, raw = load_file(one / "model.safetensors"), load_file(one / "last" / "model.safetensors")
    assert all(np.array_equal(saved[k], raw[k]) for k in saved)
    import shutil

    # resumed, epoch 2 carries on from the saved average and its step count; without the average it stops
    # rather than start a new one from the raw weights
    shutil.copytree(run, tmp_path / "no_average")
    (tmp_path / "no_average" / "last" / "ema.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        finetune.main(ft_args(manifest, tmp_path / "no_average", 2, "--ema-decay", "0.999"))
    resumed = finetune.main(ft_args(manifest, run, 2, "--ema-decay", "0.999"))
    assert resumed["history"][0] == first["history"][0] and resumed["history"][1]["ema_steps"] == 4
    assert json.loads((run / "settings.json").read_text())["ema_decay"] == 0.999

    shutil.copytree(out, tmp_path / "old")
    with pytest.raises(ValueError, match="ema_decay"):  # a run without the average is not resumed with one
        finetune.main(ft_args(manifest, tmp_path / "old", 3, "--ema-decay", "0.999"))
    with pytest.raises(SystemExit):
        ft_args(manifest, tmp_path / "bad", 1, "--ema-decay", "1")
    # a run folder from before the option has no ema_decay in its settings: it ran without the average
    settings = json.loads((tmp_path / "old" / "settings.json").read_text())
    del settings["ema_decay"]
    (tmp_path / "old" / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="ema_decay"):
        finetune.main(ft_args(manifest, tmp_path / "old", 3, "--ema-decay", "0.999"))


def test_a_source_balanced_run_trains_and_is_its_own_run(trained, tmp_path):
    manifest, out, _ = trained
    result = finetune.main(ft_args(manifest, tmp_path / "bal", 1, "--balance", "source"))
    assert np.isfinite(result["history"][0]["train_loss"])
    assert json.loads((tmp_path / "bal" / "settings.json").read_text())["balance"] == "source"
    import shutil

    shutil.copytree(out, tmp_path / "old")
    with pytest.raises(ValueError, match="balance"):  # a run of the other sampling is not resumed
        finetune.main(ft_args(manifest, tmp_path / "old", 3, "--balance", "source"))


def test_channels_last_computes_the_same_function_and_gradients():
    import copy

    import torch

    torch.manual_seed(0)
    plain = finetune.build_model("tf_efficientnet_lite0", "packaged")
    finetune.freeze_stages(plain, 3)
    last = finetune.to_channels_last(copy.deepcopy(plain))
    assert last.conv_head.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 96, 96)
    outs = []
    for model in (plain, last):
        model.train()
        model.zero_grad()
        out = model(x)
        out.sum().backward()
        outs.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-5)
    assert outs[0][1].keys() == outs[1][1].keys() and "conv_stem.weight" not in outs[0][1]  # frozen stem
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(grad, outs[1][1][name], rtol=1e-3, atol=1e-4)


def test_a_bf16_run_records_its_precision_and_exports_float32(trained, tmp_path):
    import torch
    from safetensors.torch import load_file

    manifest, _, _ = trained
    out = tmp_path / "bf16"
    # its own process: accelerate keeps one precision per process, and this one's tests train in float32
    argv = [str(x) for x in ("--manifest", manifest, "--out", out, "--epochs", 1, "--input-size", 64, "--batch-size", 8,
                             "--workers", 0, "--max-train-batches", 2, "--mixed-precision", "bf16")]
    done = subprocess.run([sys.executable, "-m", "mimicry.training.finetune", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "settings.json").read_text())["mixed_precision"] == "bf16"
    weights = load_file(str(out / "model.safetensors"))
    assert {w.dtype for w in weights.values()} <= {torch.float32, torch.int64}  # master weights stay float32
    card = export.main(export.parse_args(["--run", str(out), "--out", str(tmp_path / "model"), "--name", "bf16"]))
    assert card["calibration"]["method"] == "platt"
    with pytest.raises(ValueError, match="mixed_precision"):  # a float32 run does not resume a bf16 one
        finetune.main(ft_args(manifest, out, 2, "--mixed-precision", "no"))


def test_packaged_imagenet_weights_load_by_position():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1)
    n = finetune.load_by_position(model, finetune.packaged_weights("tf_efficientnet_lite0"))
    assert n == 294  # 296 tensors less the ImageNet classifier's weight and bias
    with pytest.raises(ValueError, match="not the same architecture"):
        finetune.load_by_position(timm.create_model("resnet18", pretrained=False, num_classes=1),
                                  finetune.packaged_weights("tf_efficientnet_lite0"))


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_lite1_and_lite2_imagenet_weights_ship_in_the_training_extra(backbone):
    import torch

    model = finetune.build_model(backbone, "packaged")  # every backbone tensor set, by position and shape
    imagenet = finetune.packaged_weights(backbone)
    assert torch.equal(model.conv_stem.weight, imagenet["_conv_stem.weight"])
    assert torch.equal(model.bn2.running_var, imagenet["_bn1.running_var"])  # the head's batch norm
    with pytest.raises(ValueError, match="packaged holds"):
        finetune.build_model("resnet18", "packaged")


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
    # n counts stored squares; n_works the published images they come from (one each for these square files)
    test_rows = [json.loads(x) for x in manifest.read_text().splitlines() if json.loads(x)["split"] == "test"]
    assert t["n"] == len(test_rows) and t["n_works"] == len({r.get("origin") or r["path"] for r in test_rows})
    assert saved["thresholds"]["human_below"] <= saved["thresholds"]["ai_mimicry"]
    assert saved["metrics"]["val"]["fpr_at_threshold"] <= 0.01
    alt = saved["thresholds"]["alternatives"]
    assert saved["thresholds"]["rule"] == "pooled" and alt["pooled"] == saved["thresholds"]["ai_mimicry"]
    assert alt["per-source"] >= alt["pooled"]  # each source held to the bound can only raise it


def test_per_source_threshold_rule_holds_every_source_to_the_bound(trained, tmp_path):
    manifest, run, _ = trained
    card = export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "m"),
                                          "--threshold-rule", "per-source"]))
    th = card["thresholds"]
    assert th["rule"] == "per-source" and th["ai_mimicry"] == th["alternatives"]["per-source"]
    assert all(v["threshold"] <= th["ai_mimicry"] for v in th["per_source_val"].values())
    assert "each source's val human works" in th["how_chosen"]
    assert th["min_source_works"] == 0 and set(th["groups_held"]) == set(th["per_source_val"])
    pooled = export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "p"),
                                            "--threshold-rule", "per-source", "--min-source-works", "100000"]))
    tp = pooled["thresholds"]
    (group,) = tp["groups_held"]  # every source of the small test data in one group
    assert tp["groups_held"][group]["n"] == sum(v["n"] for v in tp["per_source_val"].values())
    assert group.startswith("pooled: ") or len(tp["per_source_val"]) == 1
    assert tp["alternatives"]["pooled"] <= tp["ai_mimicry"] <= th["ai_mimicry"]
    assert "held to the bound pooled together" in tp["how_chosen"]
    assert th["keep_val_tpr"] == 0.0 and th["keep_val_tpr_threshold"] is None


def test_keep_val_tpr_raises_the_threshold_and_keeps_that_share_of_val_mimicry_flagged(trained, tmp_path):
    manifest, run, _ = trained
    out = tmp_path / "kept"
    card = export.main(export.parse_args(["--run", str(run), "--out", str(out), "--threshold-rule", "per-source",
                                          "--keep-val-tpr", "0.25"]))
    th = card["thresholds"]
    assert th["keep_val_tpr"] == 0.25 and th["ai_mimicry"] == max(th["alternatives"]["per-source"],
                                                                   th["keep_val_tpr_threshold"])
    assert "still flags 25% of the" in th["how_chosen"]
    val = card["metrics"]["val"]  # the val scores the rule saw
    assert val["fpr_at_threshold"] <= 0.01  # the human bound still holds
    if th["keep_val_tpr_threshold"] > th["alternatives"]["per-source"]:  # raised: the kept share is what is flagged
        assert 0.25 <= val["tpr_at_threshold"] < 0.25 + 2 / val["n_mimicry"]
    with pytest.raises(SystemExit):
        export.parse_args(["--run", str(run), "--out", str(tmp_path / "x"), "--keep-val-tpr", "1.5"])


def test_an_ensemble_export_ships_the_mean_of_its_members_logits(trained, tmp_path):
    """--ensemble-with: one graph whose logit is the mean of two runs' logits (seeds 0 and 1 here), calibrated and
    thresholded on that mean; under --int8 its one classifier stays float32 as a single model's does."""
    import shutil

    from mimicry.detector.preprocess import PreprocessConfig

    manifest, run, _ = trained
    other = tmp_path / "seed1"
    finetune.main(ft_args(manifest, other, 1, "--seed", "1"))
    card = export.main(export.parse_args(["--run", str(run), "--ensemble-with", str(other), "--out", str(tmp_path / "ens")]))
    assert card["ensemble"]["members"] == [str(run), str(other)] and card["ensemble"]["seeds"] == [0, 1]
    cfg = PreprocessConfig.from_dict(json.loads((run / "settings.json").read_text())["preprocess"])
    (got, y), _ = export.split_logits(export.onnx_forward(tmp_path / "ens" / "model.onnx"), manifest, "val", cfg, 8)
    singles = [export.split_logits(export.torch_forward(export.load_run(r)[1]), manifest, "val", cfg, 8)[0][0]
               for r in (run, other)]
    assert np.allclose(got, (singles[0] + singles[1]) / 2, atol=1e-4)
    assert not np.allclose(singles[0], singles[1], atol=1e-3)  # two different members, not one counted twice
    assert np.allclose(export.platt_fit(got, y), (card["calibration"]["a"], card["calibration"]["b"]), atol=1e-4)
    int8 = export.main(export.parse_args(["--run", str(run), "--ensemble-with", str(other), "--out",
                                          str(tmp_path / "ens8"), "--int8", "--int8-calibration-images", "8"]))
    assert len(int8["quantization"]["kept_in_float32"]) == 1
    # members must share backbone, input and data
    odd = tmp_path / "odd"
    shutil.copytree(other, odd)
    settings = json.loads((odd / "settings.json").read_text())
    settings["preprocess"]["size"] = 96
    (odd / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="must share backbone, input and data"):
        export.main(export.parse_args(["--run", str(run), "--ensemble-with", str(odd), "--out", str(tmp_path / "x")]))


def test_int8_export_ships_an_int8_graph_calibrated_on_its_own_outputs(trained, tmp_path):
    manifest, run, _ = trained
    export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "fp32")]))
    card = export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "int8"), "--int8",
                                          "--int8-calibration-images", "8"]))
    proto = onnx.load(str(tmp_path / "int8" / "model.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    q = card["quantization"]
    assert q["kind"] == "static int8" and q["per_channel"] and q["calibration"] == {
        "method": "minmax", "images": 8, "split": "train"}
    shas = [json.loads((tmp_path / d / "model.json").read_text())["onnx_sha256"] for d in ("fp32", "int8")]
    assert q["float32_onnx_sha256"] == shas[0] != shas[1]
    assert q["kept_in_float32"], "the classifier must stay float32 so a confident logit is not clipped"
    # The card's calibration is the int8 graph's: refit by hand on that graph's val logits, it is the same.
    from mimicry.detector.preprocess import PreprocessConfig

    cfg = PreprocessConfig.from_dict(json.loads((run / "settings.json").read_text())["preprocess"])
    (lg8, y), _ = export.split_logits(export.onnx_forward(tmp_path / "int8" / "model.onnx"), manifest, "val", cfg, 8)
    assert np.allclose(export.platt_fit(lg8, y), (card["calibration"]["a"], card["calibration"]["b"]), atol=1e-6)
    (lg32, _), _ = export.split_logits(export.onnx_forward(tmp_path / "fp32" / "model.onnx"), manifest, "val", cfg, 8)
    assert np.isclose(q["against_float32_on_val"]["max_abs_delta_logit"], np.abs(lg8 - lg32).max(), atol=1e-3)
    assert not np.allclose(lg8, lg32, atol=1e-4)  # it is another graph, not the float one under a new name
    from mimicry.detector import Detector  # the engine serves it as it serves a float32 graph

    v = Detector.from_dir(tmp_path / "int8").predict([str(manifest.parent / "test" / "human_0.png")])[0]
    assert v.label in ("human", "uncertain", "ai-mimicry") and 0.0 <= v.score <= 1.0


def test_calibration_is_monotone_and_thresholds_bound_the_fpr():
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(-2, 1, 200), rng.normal(2, 1, 200)])
    labels = np.r_[np.zeros(200), np.ones(200)]
    a, b = export.platt_fit(logits, labels)
    grid = np.linspace(-10, 10, 401)
    assert a > 0 and np.all(np.diff(export.calibrate(grid, a, b)) >= 0)
    for fpr in (0.0, 0.01, 0.05, 0.1):
        for n in (7, 40, 300):
            for dtype in (np.float64, np.float32):
                human = rng.random(n).astype(dtype)
                t = export.threshold_at_fpr(human, fpr)
                # float32 scores meet a Python float in float32: a threshold one float64 step above the highest
                # human score rounded back onto it there, and flagged that work (seen on a GPU-trained model)
                assert (human >= t).mean() <= fpr + 1e-12, dtype
                assert (human.astype(np.float64) >= t).mean() <= fpr + 1e-12, dtype
    # the export scores logits as the detector will: its calibration, in float64
    lg32 = rng.normal(0, 3, 50).astype(np.float32)
    from mimicry.detector.calibration import Calibration

    assert np.array_equal(export.calibrate(lg32, a, b), Calibration("platt", a=a, b=b)(lg32))
    assert export.calibrate(lg32, a, b).dtype == np.float64
    with pytest.raises(ValueError, match="slope"):
        export.platt_fit(logits, 1 - labels)


def test_threshold_groups_pool_the_sources_too_small_to_measure_the_bound():
    sources = np.array(["books"] * 150 + ["wallpapers"] * 14 + ["stamps"] * 4 + ["photos"] * 100)
    groups = export.threshold_groups(sources, 100)
    assert sorted(groups) == ["books", "photos", "pooled: stamps, wallpapers"]
    assert groups["pooled: stamps, wallpapers"].sum() == 18 and groups["books"].sum() == 150
    # every work is in exactly one group
    assert (np.sum(list(groups.values()), axis=0) == 1).all()
    assert sorted(export.threshold_groups(sources, 0)) == ["books", "photos", "stamps", "wallpapers"]
    assert sorted(export.threshold_groups(sources, 10)) == ["books", "photos", "stamps", "wallpapers"]
    assert sorted(export.threshold_groups(sources, 1000)) == ["pooled: books, photos, stamps, wallpapers"]
    # What pooling changes: with twelve 14-work sources (168 pooled, so 1% allows one), a single high-scoring
    # work of one of them no longer sets the threshold alone.
    sources = np.array(["books"] * 150 + [f"kind{k:02d}" for k in range(12) for _ in range(14)])
    scores = np.random.default_rng(3).random(len(sources)) * 0.5
    scores[150] = 0.99  # one work of kind00
    alone = max(export.threshold_at_fpr(scores[m], 0.01) for m in export.threshold_groups(sources, 0).values())
    pooled = max(export.threshold_at_fpr(scores[m], 0.01) for m in export.threshold_groups(sources, 100).values())
    assert alone > 0.99 and pooled < 0.5


def test_max_margin_threshold_keeps_the_fpr_and_sits_mid_gap():
    human = np.array([0.01, 0.02, 0.03, 0.10])
    mimicry = np.array([0.90, 0.95, 0.99])
    t = export.max_margin_threshold(human, mimicry, 0.01)
    assert (human >= t).mean() == 0 and (mimicry >= t).all()
    assert 0.10 < t < 0.90 and abs(t - 0.5) < 0.05  # logit midpoint of 0.10 and 0.90 is 0.5
    overlapping = export.max_margin_threshold(np.array([0.2, 0.6]), np.array([0.1, 0.5, 0.7]), 0.0)
    assert 0.6 < overlapping <= 0.7


def test_threshold_under_perturbations_bounds_the_val_fpr_there_too(trained, tmp_path):
    from mimicry.training import evaluate

    manifest, run, _ = trained
    out = tmp_path / "model"
    (tmp_path / "a.json").write_text('{"input_policy": {"chosen": "squash"}}')
    (tmp_path / "b.json").write_text('{"robustness": {"chosen": "robust"}}')
    card = export.main(export.parse_args(["--run", str(run), "--out", str(out), "--threshold-under",
                                          "centre_crop50", "resize0.25", "--card-extra",
                                          str(tmp_path / "a.json"), str(tmp_path / "b.json")]))
    assert card["input_policy"]["chosen"] == "squash" and card["robustness"]["chosen"] == "robust"
    (tmp_path / "c.json").write_text('{"thresholds": {}}')
    with pytest.raises(ValueError, match="may not replace"):
        export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "m2"),
                                       "--card-extra", str(tmp_path / "c.json")]))
    assert card["thresholds"]["fpr_bound_holds_on"] == ["clean val", "val under centre_crop50",
                                                        "val under resize0.25"]
    assert "centre_crop50, resize0.25" in card["thresholds"]["how_chosen"]
    # Measured through the ONNX model by the evaluator: the bound holds on each perturbed val split.
    evaluate.main(["--models", str(out), "--manifest", str(manifest), "--split", "val", "--perturbations",
                   "centre_crop50", "resize0.25", "--json", str(tmp_path / "m.json")])
    got = json.loads((tmp_path / "m.json").read_text())[str(out)]
    for name in ("test/clean", "test/centre_crop50", "test/resize0.25"):
        assert got[name]["n_human"] == 8
    flagged = sum(got[k]["flagged_human"] for k in ("test/clean", "test/centre_crop50", "test/resize0.25"))
    assert flagged <= 0.01 * 24


def test_evaluation_report_with_heldout_sets_and_plots(trained, tmp_path):
    from mimicry.training import evaluate

    manifest, run, _ = trained
    export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "a"), "--name", "a"]))
    export.main(export.parse_args(["--run", str(run), "--out", str(tmp_path / "b"), "--name", "b",
                                   "--max-fpr", "0.2"]))
    # Held-out sets: another "artist" (the val rows) and one other generator setting (the val mimicry).
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    held = [{**r, "artist": "Unseen", "condition": "default"} for r in rows if r["split"] == "val"]
    held += [{**r, "condition": "LoRA"} for r in rows if r["split"] == "val" and r["label"] == "ai-mimicry"]
    heldout = manifest.parent / "heldout_manifest.jsonl"
    heldout.write_text("".join(json.dumps(r) + "\n" for r in held))
    report = tmp_path / "docs" / "EVALUATION.md"
    notes = tmp_path / "notes.md"
    notes.write_text("## What was chosen\n\nThe robust recipe.")
    rc = evaluate.main(["--models", str(tmp_path / "a"), str(tmp_path / "b"), "--manifest", str(manifest),
                        "--heldout", str(heldout), "--report", str(report), "--plots", str(tmp_path / "docs" / "eval"),
                        "--notes", str(notes), "--json", str(tmp_path / "all.json")])
    assert rc == 0
    text = report.read_text()
    for heading in ("## Goals", "## Test split, clean and under each perturbation", "## Unseen artists",
                    "## Unseen generator settings", "## Candidates compared", "## What was chosen"):
        assert heading in text, heading
    for p in evaluate.PERTURBATIONS:
        assert f"| {p} |" in text, p
    for png in ("roc.png", "reliability.png", "score_histograms.png"):
        assert f"](eval/{png})" in text
        with Image.open(tmp_path / "docs" / "eval" / png) as im:
            assert im.format == "PNG" and im.width > 300
    got = json.loads((tmp_path / "all.json").read_text())
    a = got[str(tmp_path / "a")]
    # Pooled unseen = test (16) + the unseen artist (16); the LoRA set = test humans (8) + 8 mimicry.
    assert a["unseen/clean"]["n"] == 32 and a["generator/LoRA"]["n"] == 16
    assert a["artist/Unseen"]["n"] == 16 and 0.0 <= a["unseen/jpeg50"]["auroc"] <= 1.0
    # The table reports what the goal rows say: the clean AUROC figure appears in both.
    assert f"{a['test/clean']['auroc']:.3f}" in text.split("## Goals")[1].split("##")[0]


def test_perturbations_do_what_they_say():
    from mimicry.training import evaluate

    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8))
    p = evaluate.PERTURBATIONS
    assert p["centre_crop50"](im, 0).size == (24, 32)
    assert p["resize0.25"](im, 0).size == (12, 16)
    assert Image.open(io.BytesIO(p["jpeg50"](im, 0))).format == "JPEG"
    assert Image.open(io.BytesIO(p["webp"](im, 0))).format == "WEBP"
    a, b = p["purify_lanczos"](im, 3), p["purify_lanczos"](im, 3)
    assert a.size == im.size and np.array_equal(np.asarray(a), np.asarray(b))  # seeded per image
    assert not np.array_equal(np.asarray(a), np.asarray(p["purify_lanczos"](im, 4)))
    assert 2 < np.abs(np.asarray(a, float) - np.asarray(im, float)).mean() < 120


def test_gap_top_threshold_flags_held_out_mimicry_and_leaves_the_whole_gap_to_humans():
    human = np.array([0.01, 0.02, 0.03, 0.10])
    mimicry = np.array([0.05, 0.90, 0.95, 0.99])
    t = export.gap_top_threshold(human, mimicry, 0.01)
    assert t == 0.90 and (human >= t).sum() == 0 and (mimicry >= t).sum() == 3
    assert t > export.max_margin_threshold(human, mimicry, 0.01)
    assert export.gap_top_threshold(human, np.array([0.01]), 0.01) == export.threshold_at_fpr(human, 0.01)


def test_the_card_counts_published_images_beside_stored_squares():
    # a wide painting stored as two squares, a contact sheet's four cells, one plain file: 7 squares, 6 images
    rows = [{"origin": "museum/wide.jpg", "cell": None, "tile": k, "path": f"w{k}.png"} for k in range(2)]
    rows += [{"origin": "sd/sheet.webp", "cell": [c % 2, c // 2], "tile": 0, "path": f"s{c}.png"} for c in range(4)]
    rows += [{"origin": "clip/one.png", "cell": None, "tile": 0, "path": "o.png"}]
    assert export.counted_as(rows)["n_works"] == 6
