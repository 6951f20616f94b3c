"""Helpers for detector tests: a real (tiny) ONNX model built without torch, and image bytes.

The model averages each channel over the image and takes a fixed weighted sum, so its logit is
known in advance: with mean = std = 0.5 and weight 2, a white image gives +6 (flagged), a black one
-6 (human) and mid-grey about 0 (uncertain).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from PIL import Image

from mimicry.detector.bundle import write_model_json

SIZE = 32
WEIGHT = 2.0
TRAINED_ON = "nothing: a fixed linear map on mean colour, made in a test"


def tiny_onnx(path: Path, size: int = SIZE, weight: float = WEIGHT, input_name: str = "input",
              output_name: str = "logit") -> None:
    """input (N,3,size,size) -> GlobalAveragePool -> Flatten -> MatMul (3,1) -> output (N,1)."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 1], [weight] * 3)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", [input_name], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], [output_name])],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def tiny_card(size: int = SIZE, **overrides) -> dict:
    card = {
        "format_version": 1,
        "name": "tiny-test",
        "version": "0.0.1",
        "backbone": "global-average-pool",
        "input": {"name": "input", "layout": "NCHW", "dtype": "float32", "size": size, "resize": "squash",
                  "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "output": {"name": "logit", "meaning": "logit of P(ai-mimicry)"},
        "calibration": {"method": "platt", "a": 1.0, "b": 0.0},
        "thresholds": {"ai_mimicry": 0.9, "human_below": 0.3, "how_chosen": "fixed in the test"},
        "metrics": {"test": {"auroc": 1.0}},
        "training_data": {"trained_on": TRAINED_ON},
        "libraries": {"onnx": onnx.__version__},
    }
    card.update(overrides)
    return card


def make_model_dir(path: Path, card: dict | None = None, **onnx_kwargs) -> Path:
    """A complete model directory at ``path``."""
    tiny_onnx(path / "model.onnx", **onnx_kwargs)
    write_model_json(path, card or tiny_card())
    return path


# ----------------------------------------------------------------------------- image bytes


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand: any header, and ``rows`` (filter bytes included) as its pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def png_bomb_header(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB pixels and holds almost none."""
    return raw_png(width, height, 8, 2, b"\x00" * 16)


def solid(colour, size=(48, 32), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)
