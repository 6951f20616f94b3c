"""Model directories: ``models/<name>/`` holding ``model.onnx`` and the ``model.json`` card.

The card carries everything inference needs (preprocessing, calibration, thresholds) and
everything a user should know (metrics, what it was trained on, library versions). A directory is
loaded only when the card is complete and ``model.onnx`` is byte for byte the file the card was
written for; anything else is a :class:`ModelError` that says what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from .calibration import Calibration, Thresholds
from .preprocess import PreprocessConfig

T = TypeVar("T")

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
# What a model directory holds, so one is never loaded as the other. Detector cards written before
# ``kind`` existed have none and are read as detectors; the style encoder's card always had it.
KIND = "detector"
KINDS = ("detector", "style-encoder")
ONNX_FILE = "model.onnx"
CARD_FILE = "model.json"
# Dotted paths that every card must have; sections may hold more (notes, extra metrics).
REQUIRED_FIELDS = (
    "format_version", "name", "version", "backbone",
    "input.name", "input.size", "input.resize", "input.interpolation", "input.mean", "input.std",
    "input.layout",
    "output.name", "output.meaning",
    "calibration.method",
    "thresholds.ai_mimicry", "thresholds.human_below", "thresholds.how_chosen",
    "metrics", "training_data.trained_on", "onnx_sha256", "libraries",
)
# Keys of the input section that describe the tensor rather than how an image becomes one.
_INPUT_TENSOR_KEYS = ("name", "layout", "dtype")


class ModelError(Exception):
    """A model directory that cannot be used, with the reason."""


@dataclasses.dataclass(frozen=True)
class ModelBundle:
    """A checked model directory. ``card`` is the parsed ``model.json``; treat it as read-only."""

    path: Path
    card: dict
    preprocess: PreprocessConfig
    calibration: Calibration
    thresholds: Thresholds

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> ModelBundle:
        """Load and check ``path/model.json`` and ``path/model.onnx``; raise :class:`ModelError`
        if either is missing, the card is invalid or incomplete, or the ONNX file's sha256 differs
        from the card's ``onnx_sha256``. ``path`` may also be a bare name (``"default"``), found by
        :func:`mimicry.detector.locations.resolve_model_dir`: ``$MIMICRY_MODELS/<name>``, then the
        bundled copy."""
        from .locations import resolve_model_dir

        path = resolve_model_dir(path)
        card, (preprocess, calibration, thresholds) = read_checked_card(path, parse_card)
        return cls(path, card, preprocess, calibration, thresholds)

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def input_name(self) -> str:
        return str(self.card["input"]["name"])

    @property
    def output_name(self) -> str:
        return str(self.card["output"]["name"])

    @property
    def trained_on(self) -> str:
        """The card's one-sentence account of the training data, repeated in every verdict."""
        return str(self.card["training_data"]["trained_on"])


def read_checked_card(path: Path, parse: Callable[[object, str], T], what: str = "model") -> tuple[dict, T]:
    """Read ``path/model.json``, check it with ``parse(card, where)`` and check that
    ``path/model.onnx`` is the file it was written for (sha256); returns the card and what
    ``parse`` returned. Every problem is a :class:`ModelError` naming the file. ``what`` names
    the kind of directory in messages ("model", "style encoder")."""
    if not path.is_dir():
        raise ModelError(f"{what} directory not found: {path}")
    card_path, onnx_path = path / CARD_FILE, path / ONNX_FILE
    for f in (card_path, onnx_path):
        if not f.is_file():
            raise ModelError(f"{f.name} missing from {what} directory {path}")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card_path} is not valid JSON: {exc}") from None
    parsed = parse(card, str(card_path))
    actual = file_sha256(onnx_path)
    if actual != card["onnx_sha256"]:
        raise ModelError(
            f"{onnx_path} does not match its model.json: the file's sha256 is {actual}, "
            f"model.json says {card['onnx_sha256']} (was model.onnx replaced or changed after export?)"
        )
    return card, parsed


def parse_card(card: object, where: str = CARD_FILE) -> tuple[PreprocessConfig, Calibration, Thresholds]:
    """Check a ``model.json`` dict and return what inference needs from it; raise :class:`ModelError`."""
    if not isinstance(card, Mapping):
        raise ModelError(f"{where}: expected a JSON object, got {type(card).__name__}")
    check_kind(card, KIND, where, default=KIND)
    version = card.get("format_version")
    if version is None:
        raise ModelError(f"{where}: format_version missing")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelError(f"{where}: format_version {version!r} is not supported by this version of "
                         f"detector (supported: {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))})")
    missing = [f for f in REQUIRED_FIELDS if not _has(card, f)]
    if missing:
        raise ModelError(f"{where}: required field(s) missing: {', '.join(missing)}")
    for section in ("metrics", "training_data", "libraries"):
        if not isinstance(card[section], Mapping):
            raise ModelError(f"{where}: {section} must be an object")
    inp = card["input"]
    if inp["layout"] != "NCHW":
        raise ModelError(f"{where}: input.layout {inp['layout']!r} is not supported (only NCHW)")
    if inp.get("dtype", "float32") != "float32":
        raise ModelError(f"{where}: input.dtype {inp['dtype']!r} is not supported (only float32)")
    if not (isinstance(card["onnx_sha256"], str) and len(card["onnx_sha256"]) == 64):
        raise ModelError(f"{where}: onnx_sha256 must be 64 hex digits")
    try:
        preprocess = PreprocessConfig.from_dict({k: v for k, v in inp.items() if k not in _INPUT_TENSOR_KEYS})
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: input: {exc}") from None
    try:
        calibration = Calibration.from_dict(card["calibration"])
    except KeyError as exc:
        raise ModelError(f"{where}: calibration.{exc.args[0]} missing for method "
                         f"{card['calibration'].get('method')!r}") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: calibration: {exc}") from None
    try:
        thresholds = Thresholds.from_dict(card["thresholds"])
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: thresholds: {exc}") from None
    return preprocess, calibration, thresholds


def check_kind(card: Mapping, kind: str, where: str, default: str | None = None) -> None:
    """Refuse (:class:`ModelError`) a card whose ``kind`` is not ``kind``; a card without one is
    ``default`` (None: the field is required)."""
    found = card.get("kind", default)
    if found != kind:
        hint = f" (is this a {found.replace('-', ' ')} directory?)" if found in KINDS else ""
        raise ModelError(f"{where}: kind is {found!r}, not {kind!r}{hint}")


def write_card(model_dir: str | os.PathLike, card: Mapping, parse: Callable[[object, str], object],
               what: str = "model") -> dict:
    """Write ``model_dir/model.json`` from ``card`` with ``onnx_sha256`` filled in from
    ``model_dir/model.onnx``, after checking it with ``parse`` (the same check the loader runs), so
    an export never writes a directory its loader would refuse. Returns the card as written. Used
    for every kind of model directory (detector, style encoder)."""
    model_dir = Path(model_dir)
    onnx_path = model_dir / ONNX_FILE
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path} not found: export the ONNX file before writing model.json")
    full = dict(card)
    full["onnx_sha256"] = file_sha256(onnx_path)
    parse(full, f"{what} card for {model_dir}")
    text = json.dumps(full, indent=2, ensure_ascii=False) + "\n"
    # Write then rename, so a crash never leaves a half-written card beside a good model.
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".model.json.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a card is meant to be read by anyone
        os.replace(tmp, model_dir / CARD_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return full


def write_model_json(model_dir: str | os.PathLike, card: Mapping) -> dict:
    """Write a detector's ``model.json`` (:func:`write_card`); ``kind`` is set to ``detector``."""
    return write_card(model_dir, {"kind": KIND, **card}, parse_card)


_telemetry_off = False


def disable_onnxruntime_telemetry() -> None:
    """Turn off onnxruntime's telemetry events for this process (once; cheap after that). Called
    by ``detector.open_session`` before every session it makes."""
    global _telemetry_off
    if _telemetry_off:
        return
    import onnxruntime

    onnxruntime.disable_telemetry_events()
    _telemetry_off = True


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _has(card: Mapping, dotted: str) -> bool:
    node: object = card
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node or node[key] is None:
            return False
        node = node[key]
    return True
