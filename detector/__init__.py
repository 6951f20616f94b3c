"""Inference library: decode safely, preprocess, run the ONNX model, return calibrated verdicts.

numpy + Pillow + onnxruntime only; never torch. Names are imported lazily, so
``from mimicry.detector.decode import decode_image`` (as training does) does not load onnxruntime::

    from mimicry.detector import Detector

    det = Detector.default()                    # load once: the bundled model; or Detector.from_dir(PATH)
    for v in det.predict(["a.png", "b.jpg"]):    # predict many times
        print(v.source, v.label, v.score, v.error)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Detector": "mimicry.detector.detector",
    "ModelBundle": "mimicry.detector.bundle",
    "ModelError": "mimicry.detector.bundle",
    "write_model_json": "mimicry.detector.bundle",
    "resolve_model_dir": "mimicry.detector.locations",
    "bundled_models": "mimicry.detector.locations",
    "data_dir": "mimicry.detector.locations",
    "DecodeError": "mimicry.detector.decode",
    "decode_image": "mimicry.detector.decode",
    "decode_with_metadata": "mimicry.detector.decode",
    "decode_frames": "mimicry.detector.decode",
    "read_provenance": "mimicry.detector.provenance",
    "Signal": "mimicry.detector.provenance",
    "explain": "mimicry.detector.explain",
    "Explanation": "mimicry.detector.explain",
    "StyleEncoder": "mimicry.detector.style",
    "Attribution": "mimicry.detector.attribution",
    "Registry": "mimicry.detector.registry",
    "PreprocessConfig": "mimicry.detector.preprocess",
    "preprocess": "mimicry.detector.preprocess",
    "preprocess_batch": "mimicry.detector.preprocess",
    "Calibration": "mimicry.detector.calibration",
    "Thresholds": "mimicry.detector.calibration",
    "Verdict": "mimicry.detector.verdict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
