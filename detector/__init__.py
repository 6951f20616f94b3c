"""Inference library: decode safely, preprocess, run the ONNX model, return calibrated verdicts.

numpy + Pillow + onnxruntime only; never torch. Names are imported lazily, so
``from detector.decode import decode_image`` (as training does) does not load onnxruntime::

    from detector import Detector

    det = Detector.from_dir("models/default")   # load once
    for v in det.predict(["a.png", "b.jpg"]):    # predict many times
        print(v.source, v.label, v.score, v.error)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Detector": "detector.detector",
    "ModelBundle": "detector.bundle",
    "ModelError": "detector.bundle",
    "write_model_json": "detector.bundle",
    "DecodeError": "detector.decode",
    "decode_image": "detector.decode",
    "decode_with_metadata": "detector.decode",
    "read_provenance": "detector.provenance",
    "Signal": "detector.provenance",
    "explain": "detector.explain",
    "Explanation": "detector.explain",
    "StyleEncoder": "detector.style",
    "Registry": "detector.registry",
    "PreprocessConfig": "detector.preprocess",
    "preprocess": "detector.preprocess",
    "preprocess_batch": "detector.preprocess",
    "Calibration": "detector.calibration",
    "Thresholds": "detector.calibration",
    "Verdict": "detector.verdict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
