"""Shortcut baselines: what a classifier learns from file facts alone, or from colour alone.

A detector is only worth something where it beats these. Both are fit on the train split of a dataset built
by ``mimicry.training.external`` and scored on another split:

* **file facts** (:func:`file_facts`): container format, width, height, aspect ratio, megapixels, bytes per
  pixel and the mean JPEG quantisation step, read from a file. On the files *as published* they separate the
  classes of most public collections (AI sheets are WebP squares, museum scans large JPEGs); on the stored,
  normalised squares they must be near chance, or the normalisation leaks.
* **colour** (:func:`colour_features`): HSV histograms and RGB moments of the pixels, no texture at all. A
  detector that does not clearly beat it has learnt palette, not generator traces.

:func:`texture_energy` is one number of the other kind, how busy a picture is, for studies of where a detector
ranks well and where it does not (``mimicry.training.texture_strata``).

Gradient-boosted trees (scikit-learn) for both: they need no scaling and find any threshold a file fact has.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
FILE_FACT_NAMES = [f"format={f}" for f in FORMATS] + ["width", "height", "aspect", "megapixels", "bytes_per_pixel",
                                                       "jpeg_quant_mean"]


def file_facts(data: bytes) -> np.ndarray:
    """The facts of an encoded file that say nothing of its pixels' content (see the module docstring)."""
    with Image.open(io.BytesIO(data)) as im:
        fmt, (w, h) = im.format, im.size
        quant = getattr(im, "quantization", None) or {}
    q = float(np.mean([np.mean(t) for t in quant.values()])) if quant else 0.0
    onehot = [float(fmt == f) for f in FORMATS]
    return np.array(onehot + [w, h, w / h, w * h / 1e6, len(data) / (w * h), q], dtype=np.float64)


def colour_features(image: Image.Image, size: int = 128) -> np.ndarray:
    """HSV histograms (16 bins each), a coarse joint hue-saturation histogram and RGB mean/std/quantiles.

    Computed on a ``size`` x ``size`` thumbnail, so no fine texture survives: only palette and tone.
    """
    im = image.convert("RGB").resize((size, size), Image.Resampling.BOX)
    rgb = np.asarray(im, dtype=np.float64) / 255.0
    hsv = np.asarray(im.convert("HSV"), dtype=np.float64) / 255.0
    feats = []
    for c in range(3):
        feats.append(np.histogram(hsv[..., c], bins=16, range=(0, 1))[0] / hsv[..., c].size)
    joint = np.histogram2d(hsv[..., 0].ravel(), hsv[..., 1].ravel(), bins=6, range=[[0, 1], [0, 1]])[0]
    feats.append(joint.ravel() / joint.sum())
    flat = rgb.reshape(-1, 3)
    feats += [flat.mean(0), flat.std(0), np.quantile(flat, [0.05, 0.5, 0.95], axis=0).ravel()]
    return np.concatenate(feats)


def texture_energy(image: Image.Image, size: int = 320) -> float:
    """log10 of the mean absolute 4-neighbour Laplacian of the grey centred square, resized to ``size`` (bicubic),
    as the detector's input would be.

    High for busy pictures (photographs of monuments, dense brushwork, fine hatching), low for flat clip art and
    smooth gradients: texture only, no palette.
    """
    w, h = image.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    grey = np.asarray(image.convert("L").resize((size, size), Image.Resampling.BICUBIC, box=box), dtype=np.float32)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.log10(np.abs(lap).mean() + 1e-3))


def fit_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """P(AI) for ``x_test`` from gradient-boosted trees fit on the train rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed,
                                         class_weight="balanced")
    clf.fit(x_train, y_train)
    return clf.predict_proba(x_test)[:, 1]


def read_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()
