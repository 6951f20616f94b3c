"""The style encoder builder's learned ``metric`` projection: its folds, its held-out score, and that it starts
at PCA and learns only what held-out authors confirm."""

from __future__ import annotations

import numpy as np

from mimicry.training import style_encoder
from mimicry.training.style_encoder import (
    PROJECTIONS, embed, fit_metric, fit_projection, held_out_score, metric_folds,
)


def works_of(rng: np.random.Generator, n_authors: int, per_author: int, prefix: str = "a"):
    """Rows whose author shows only in 4 low-variance directions, under 4 directions of large variance that
    vary from work to work (what a drawing shows, not how): the top principal components are the nuisance."""
    authors, rows = [], []
    for i in range(n_authors):
        style = rng.normal(0, 1.0, 4)
        for _ in range(per_author):
            nuisance = rng.normal(0, 3.0, 4)
            rows.append(np.concatenate([nuisance, style + rng.normal(0, 0.1, 4), rng.normal(0, 0.05, 32)]))
            authors.append(f"{prefix}{i}")
    return np.array(rows), authors


def test_folds_keep_an_author_whole_and_spread_the_prolific_ones():
    authors = ["big1"] * 60 + ["big2"] * 50 + ["big3"] * 40 + ["big4"] * 30
    authors += [f"small{i}" for i in range(20) for _ in range(3)]
    fold = metric_folds(authors, 4)
    by_author = {a: set(fold[[i for i, b in enumerate(authors) if b == a]]) for a in set(authors)}
    assert all(len(f) == 1 for f in by_author.values())
    assert {next(iter(by_author[a])) for a in ("big1", "big2", "big3", "big4")} == {0, 1, 2, 3}
    assert np.array_equal(fold, metric_folds(list(authors), 4))  # stable


def test_held_out_score_counts_works_nearest_their_own_author_above_the_threshold():
    labels = np.repeat(np.arange(6), 5)
    apart = np.eye(8)[labels] + np.random.default_rng(0).normal(0, 0.01, (30, 8))
    apart /= np.linalg.norm(apart, axis=1, keepdims=True)
    assert held_out_score(apart, labels) == 1.0
    same = np.tile(np.eye(8)[:1], (30, 1))
    assert held_out_score(same, labels) == 0.0


def test_metric_without_steps_is_pca():
    rng = np.random.default_rng(1)
    x, authors = works_of(rng, 12, 6)
    mu, w_pca = fit_projection(x, authors, "pca", 4)
    report: dict = {}
    w = fit_metric(x - mu, authors, 4, {"max_steps": 0}, report)
    assert report["steps"] == 0 and w.shape == w_pca.shape
    np.testing.assert_allclose(w, w_pca, atol=1e-9)


def test_metric_learns_the_author_directions_pca_misses(monkeypatch):
    assert "metric" in PROJECTIONS
    monkeypatch.setitem(style_encoder.METRIC_SETTINGS, "lr", 1e-2)  # a few steps go a long way on 24 authors
    rng = np.random.default_rng(2)
    x, authors = works_of(rng, 24, 8)
    report: dict = {}
    mu, w = fit_projection(x, authors, "metric", 4, report=report)
    assert w.shape == (x.shape[1], 4) and report["steps"] > 0  # the folds of these authors said: learn
    assert max(report["held_out_score_by_step"]) > report["held_out_score_by_step"][0]
    mu_p, w_p = fit_projection(x, authors, "pca", 4)
    new, new_authors = works_of(rng, 10, 8, prefix="new")  # authors neither projection saw
    labels = np.unique(new_authors, return_inverse=True)[1]
    learned, pca = held_out_score(embed(new, mu, w), labels), held_out_score(embed(new, mu_p, w_p), labels)
    assert learned > pca + 0.3, (learned, pca)


def test_the_trunk_asked_for_is_built_with_its_packaged_imagenet_weights():
    """``--backbone`` reaches the trunk: Lite2 is wider than Lite0 (48 channels after its third block group
    against 40) and starts from its own package's ImageNet weights, frozen; a trunk without packaged
    weights is refused while parsing."""
    import pytest
    import torch

    from mimicry.training.finetune import packaged_weights

    trunk = style_encoder.build_trunk("tf_efficientnet_lite2")
    maps = style_encoder.block_maps(trunk, torch.zeros(1, 3, 64, 64), last=2)
    assert maps[2].shape[1] == 48
    stem = next(iter(packaged_weights("tf_efficientnet_lite2").values()))
    assert torch.equal(trunk.conv_stem.weight, stem)
    assert not any(p.requires_grad for p in trunk.parameters())
    assert style_encoder.parse_args(["--backbone", "tf_efficientnet_lite1"]).backbone == "tf_efficientnet_lite1"
    with pytest.raises(SystemExit):
        style_encoder.parse_args(["--backbone", "resnet50"])
