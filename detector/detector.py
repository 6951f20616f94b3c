"""The detector: decode safely -> preprocess -> onnxruntime (batched) -> calibrated verdict.

Load once with :meth:`Detector.from_dir`, then call :meth:`Detector.predict` (or
:meth:`Detector.stream` for inputs too many to hold) as often as needed. A ``Detector`` owns one
onnxruntime session and no global state; ``session.run`` is thread-safe, so one instance can serve
several threads.

Every verdict also carries the file's provenance signals (``mimicry.detector.provenance``): a file that
declares itself AI-made is labelled ``ai-mimicry`` whatever its score, with
``evidence["label_reason"] == "declared-ai-by-metadata"``; nothing in metadata ever lowers a label.

With an :class:`~detector.attribution.Attribution` (``Detector.from_dir(..., attribution=att)``),
verdicts also say whose enrolled style each image is closest to and which enrolled work it copies
(``evidence["artists"]``, ``evidence["copy_of"]``), from the same decode, with the style encoder run
in batches as the detector is.

**Animations** (an animated GIF, WebP or PNG: ``mimicry.detector.decode.decode_frames``) are judged on up to
four frames spread evenly over the frames the decoder may reach (a pixel budget bounds them); each frame is
decoded and preprocessed as a still image is and scored by the model in the same batch. The verdict's rule,
:func:`frame_logit`, is written once here and used by every door (the HTTP service included): the verdict's
logit is the **mean of the frames' logits**, and its score that logit calibrated, so a still image's verdict
is exactly what it was and an animation's does not hang on one frame. ``evidence["frames"]`` says which
frames were scored and what each scored; a still image has no such key. Provenance is read once per file;
attribution (``Loaded.style``) and the heatmap (``mimicry.detector.explain``) use the first frame.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import onnxruntime as ort
from PIL import Image

from .bundle import ModelBundle, ModelError, disable_onnxruntime_telemetry
from .decode import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, MIN_SIDE, Animation, DecodeError, Source, decode_frames,
                     decode_with_metadata)
from .preprocess import PreprocessConfig, preprocess
from .provenance import DECLARED_AI, Signal, declares_ai, read_provenance
from .verdict import Verdict

if TYPE_CHECKING:
    from .attribution import Attribution, Evidence, Prepared

MODEL_SCORE = "model-score"
# How an animation's frames make one verdict (evidence["frames"]["rule"]): see frame_logit.
FRAME_RULE = "mean-logit"

_SINGLE_SOURCE = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray)


def default_providers() -> list[str]:
    """CUDA first where this onnxruntime build has it, always with the CPU as the fallback."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(onnx_path, *, providers: list[str] | None = None,
                 intra_op_threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session configured as every model here runs: full graph optimisation,
    ``intra_op_threads`` (default: the cores), idle threads not spinning; ``providers`` default
    to :func:`default_providers`. Raises :class:`~detector.bundle.ModelError`."""
    disable_onnxruntime_telemetry()  # every session, however it was reached, opens with telemetry off
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads or os.cpu_count() or 1
    # Idle onnxruntime threads would otherwise spin and take the cores that decode threads need
    # (measured: 124 -> 131 images/s scanning 1-MP JPEGs on 2 cores, BENCHMARKS.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers or default_providers())
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise ModelError(f"onnxruntime cannot load {onnx_path}: {exc}") from None


def frame_logit(logits: Sequence[float] | np.ndarray) -> float:
    """The one rule by which an animation's frames make a verdict: the mean of the frames' logits
    (:data:`FRAME_RULE`). The verdict's score is this logit calibrated. A still image's one logit is
    its own mean, so its verdict is unchanged; the mean of logits, not of calibrated scores, keeps one
    frame far out on the calibration curve from deciding alone."""
    values = np.asarray(logits, np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("no frame logits to combine")
    return float(values.mean())


class Loaded(NamedTuple):
    """One decoded source: the model's input ``(3, size, size)`` (an animation's first frame), its
    provenance signals (None when provenance is not read), what attribution needs of it (None without
    attribution, or when nobody is enrolled; the first frame of an animation), and for an animation
    ``frames``, the inputs of every frame scored ``(k, 3, size, size)`` (``frames[0]`` is ``x``), with
    ``animation`` saying which frames they are. Score every row of :attr:`inputs` and hand the logits to
    :meth:`Detector.verdict` with ``animation``."""

    x: np.ndarray
    provenance: list[Signal] | None
    style: Prepared | None = None
    frames: np.ndarray | None = None
    animation: Animation | None = None

    @property
    def inputs(self) -> np.ndarray:
        """What the model scores for this source, ``(k, 3, size, size)``: one row, or one per frame."""
        return self.frames if self.frames is not None else self.x[None]


class Detector:
    """A loaded model: turns images into :class:`~detector.verdict.Verdict` objects."""

    def __init__(self, bundle: ModelBundle, session: ort.InferenceSession, *,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
                 provenance: bool = True, attribution: Attribution | None = None):
        self.bundle = bundle
        self.session = session
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.provenance = provenance
        self.attribution = attribution
        self.input_name, self.output_name = _check_session(bundle, session)

    @classmethod
    def from_dir(cls, path: str | os.PathLike, *, providers: list[str] | None = None,
                 intra_op_threads: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS, provenance: bool = True,
                 attribution: Attribution | None = None) -> Detector:
        """Load a model directory (see :class:`~detector.bundle.ModelBundle`) into an
        onnxruntime session. ``providers`` defaults to :func:`default_providers`;
        ``intra_op_threads`` to ``os.cpu_count()``; ``provenance=False`` leaves metadata unread
        (verdicts then have no ``evidence["provenance"]``); with ``attribution`` verdicts say whose
        enrolled style each image is closest to (:mod:`mimicry.detector.attribution`).
        Raises :class:`~detector.bundle.ModelError`."""
        bundle = ModelBundle.from_dir(path)
        session = open_session(bundle.onnx_path, providers=providers, intra_op_threads=intra_op_threads)
        return cls(bundle, session, max_bytes=max_bytes, max_pixels=max_pixels, provenance=provenance,
                   attribution=attribution)

    @property
    def config(self) -> PreprocessConfig:
        return self.bundle.preprocess

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> str:
        return self.bundle.version

    # ------------------------------------------------------------------------- one image

    def load_input(self, source: Source) -> np.ndarray:
        """Decode and preprocess one source into a ``(3, size, size)`` array (an animation's first frame;
        :meth:`load` gives every frame a verdict scores); raises DecodeError.

        Large JPEGs decode at a reduced DCT scale that keeps both sides >= the input size (several
        times faster); after the resize the input differs slightly, not materially, from a full decode.
        """
        return preprocess(self._decode(source)[0][0], self.config)

    def load(self, source: Source, *, attribute: bool = True) -> Loaded:
        """:meth:`load_input` plus the source's provenance signals (when this detector reads them)
        and, with attribution (unless ``attribute=False``) while anyone is enrolled, what attribution
        needs of it (from the first frame), all from the same decode; an animation also gets the inputs
        of the frames it is scored on (:class:`Loaded`). Raises DecodeError. Pass them to :meth:`verdict`."""
        images, metadata, animation = self._decode(source, frames=True)
        signals = read_provenance(metadata, source) if self.provenance else None
        style = None
        if attribute and self.attribution is not None and self.attribution.active():
            from .copies import source_sha256  # with attribution only: imagehash stays out of a plain detector

            style = self.attribution.prepare(images[0], source_sha256(source))
        inputs = [preprocess(im, self.config) for im in images]
        frames = np.stack(inputs) if animation is not None else None
        return Loaded(inputs[0], signals, style, frames, animation)

    def decode(self, source: Source) -> tuple[Image.Image, list[Signal] | None]:
        """The safe decode :meth:`load` makes (RGB; a large JPEG at the draft scale the input size
        allows; ``too_small`` below :data:`~detector.decode.MIN_SIDE` pixels a side) and the provenance signals, before preprocessing: for a caller that also hands the
        image to another model (the style encoder) instead of decoding it twice. An animation gives its
        first frame. Raises DecodeError."""
        images, metadata, _ = self._decode(source)
        return images[0], (read_provenance(metadata, source) if self.provenance else None)

    def _decode(self, source: Source, *, frames: bool = False):
        """(images, metadata, animation): the first frame, or with ``frames`` an animation's frames."""
        draft = self.config.size
        if self.attribution is not None:  # the style encoder takes the same decode: keep enough pixels for it
            draft = max(draft, self.attribution.input_size)
        kwargs = dict(max_bytes=self.max_bytes, max_pixels=self.max_pixels, draft_size=draft)
        if frames:
            images, metadata, animation = decode_frames(source, **kwargs)
        else:
            image, metadata = decode_with_metadata(source, **kwargs)
            images, animation = [image], None
        image = images[0]
        if min(image.size) < MIN_SIDE:
            raise DecodeError("too_small", f"{image.width}x{image.height} pixels; a verdict needs at least "
                                           f"{MIN_SIDE} pixels on each side")
        return images, metadata, animation

    # ------------------------------------------------------------------------- batches

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """Raw logits, shape ``(N,)``, for a preprocessed float32 batch ``(N, 3, size, size)``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = (3, self.config.size, self.config.size)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"expected a batch of shape (N, {', '.join(map(str, expected))}), got {x.shape}")
        if len(x) == 0:
            return np.zeros(0, np.float32)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        out = np.asarray(out).reshape(len(x), -1)
        if out.shape[1] != 1:
            raise ModelError(f"model output {self.output_name!r} has {out.shape[1]} values per image, expected 1")
        return out[:, 0]

    def predict(self, sources: Source | Iterable[Source], batch_size: int = 32) -> list[Verdict]:
        """One verdict per source, in order. Sources are paths, encoded bytes, PIL images or uint8
        arrays (a single one is accepted too); one that cannot be decoded gets an error verdict."""
        if isinstance(sources, _SINGLE_SOURCE):
            sources = [sources]
        return list(self.stream(sources, batch_size=batch_size))

    def stream(self, sources: Iterable[Source], *, batch_size: int = 32, workers: int = 0) -> Iterator[Verdict]:
        """Yield one verdict per source, in order, holding at most two batches at a time.

        With ``workers > 0`` a thread pool decodes and preprocesses the next batch while
        onnxruntime runs the current one (Pillow and numpy release the GIL while they work). An
        animation's frames are rows of its batch (up to :data:`~detector.decode.MAX_FRAMES` per source).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chunks = _chunks(enumerate(sources), batch_size)
        if workers <= 0:
            for chunk in chunks:
                yield from self._verdicts(chunk, [self._load_or_error(s) for _, s in chunk])
            return
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        try:
            pending: tuple[list, list[Future]] | None = None
            for chunk in chunks:
                futures = [pool.submit(self._load_or_error, s) for _, s in chunk]
                if pending is not None:
                    yield from self._verdicts(pending[0], [f.result() for f in pending[1]])
                pending = (chunk, futures)
            if pending is not None:
                yield from self._verdicts(pending[0], [f.result() for f in pending[1]])
        finally:
            # On an early stop (consumer broke off, Ctrl-C) drop queued decodes instead of finishing them.
            pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------------- internals

    def _load_or_error(self, source: Source) -> Loaded | DecodeError:
        try:
            return self.load(source)
        except DecodeError as exc:
            return exc

    def _verdicts(self, chunk: list[tuple[int, Source]], loaded: list[Loaded | DecodeError]) -> list[Verdict]:
        good = [x.inputs for x in loaded if isinstance(x, Loaded)]  # an animation's frames in the same batch
        logits = self.predict_arrays(np.concatenate(good)) if good else np.zeros(0, np.float32)
        attributed = iter(self._attribute([x.style for x in loaded if isinstance(x, Loaded) and x.style is not None]))
        verdicts, row = [], 0
        for (index, source), x in zip(chunk, loaded):
            name = describe_source(source, index)
            if isinstance(x, DecodeError):
                verdicts.append(self.error_verdict(name, x.code, x.message))
                continue
            n = len(x.inputs)
            verdicts.append(self.verdict(name, logits[row:row + n], x.provenance,
                                         next(attributed) if x.style is not None else None, animation=x.animation))
            row += n
        return verdicts

    def _attribute(self, prepared: list[Prepared]) -> list[Evidence]:
        """One style-encoder batch and one registry match for the attributed images of a batch."""
        if not prepared:
            return []
        att = self.attribution
        return att.evidence(att.embed(prepared), [p.signature for p in prepared])

    def _scored(self, name: str, logit: float, score: float, provenance: Sequence[Signal] | None = None,
                attribution: Evidence | None = None, frames: dict | None = None) -> Verdict:
        t = self.bundle.thresholds
        label = model_label = t.label(score)
        evidence = {"logit": logit, "model_trained_on": self.bundle.trained_on}
        if frames is not None:
            evidence["frames"] = frames
        reason = MODEL_SCORE
        if provenance is not None:
            evidence["provenance"] = [s.to_dict() for s in provenance]
            # A declaration of AI raises the label; the score stays the model's. Nothing lowers it.
            if declares_ai(provenance) and model_label != "ai-mimicry":
                label, reason = "ai-mimicry", DECLARED_AI
        evidence["model_label"] = model_label
        evidence["label_reason"] = reason
        if attribution is not None:
            evidence.update(attribution.to_dict())
        return Verdict(source=name, score=score, label=label, threshold=t.ai_mimicry,
                       model=self.name, model_version=self.version, evidence=evidence)

    def verdict(self, source: str, logit: float | Sequence[float] | np.ndarray,
                provenance: Sequence[Signal] | None = None, attribution: Evidence | None = None, *,
                animation: Animation | None = None) -> Verdict:
        """The verdict for one source's raw model output (as :meth:`predict_arrays` returns it): calibrated
        score, band and evidence, with ``provenance`` (from :meth:`load`) and ``attribution`` (from
        :meth:`~detector.attribution.Attribution.evidence`) folded in when given. For callers that
        batch inputs themselves (the HTTP service).

        ``logit`` is one logit per row of :attr:`Loaded.inputs`: a number for a still image, the frames'
        logits for an animation (with its ``animation``, :attr:`Loaded.animation`). Several logits make one
        by :func:`frame_logit`, and ``evidence["frames"]`` records them:
        ``{"rule", "count", "reached", "scored", "logits", "scores"}`` (see ``Verdict``)."""
        logits = np.asarray(logit, np.float64).reshape(-1)
        if animation is not None and len(logits) != len(animation.indices):
            raise ValueError(f"{len(logits)} logits for the {len(animation.indices)} frames scored")
        combined = frame_logit(logits)
        score = float(self.bundle.calibration(np.asarray([combined], np.float32))[0])
        frames = None
        if animation is not None:
            frames = {"rule": FRAME_RULE, "count": animation.count, "reached": animation.reached,
                      "scored": list(animation.indices), "logits": logits.tolist(),
                      "scores": self.bundle.calibration(logits.astype(np.float32)).astype(float).tolist()}
        elif len(logits) != 1:
            raise ValueError(f"{len(logits)} logits for a still image; an animation's come with its animation")
        return self._scored(source, combined, score, provenance, attribution, frames)

    def error_verdict(self, source: str, code: str, message: str) -> Verdict:
        """A verdict for a source that could not be scored (no score, no label)."""
        return Verdict(source=source, score=None, label=None, threshold=None, model=self.name,
                       model_version=self.version, error=message, error_code=code,
                       evidence={"model_trained_on": self.bundle.trained_on})

    @classmethod
    def default(cls, **kwargs) -> Detector:
        """The bundled detector (or ``$MIMICRY_MODELS/default``); ``kwargs`` as :meth:`from_dir`."""
        return cls.from_dir("default", **kwargs)


def describe_source(source: Source, index: int) -> str:
    """A source's name in a verdict: the path as given, a PIL image's file name, or its position."""
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    if isinstance(source, Image.Image) and getattr(source, "filename", ""):
        return str(source.filename)
    if isinstance(source, (bytes, bytearray, memoryview)):
        kind = "bytes"
    elif isinstance(source, Image.Image):
        kind = "image"
    elif isinstance(source, np.ndarray):
        kind = "array"
    else:
        kind = type(source).__name__
    return f"<{kind} #{index}>"


def _check_session(bundle: ModelBundle, session: ort.InferenceSession) -> tuple[str, str]:
    """The graph's input and output names, checked against the card."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"{bundle.onnx_path} has {len(inputs)} inputs; a detector takes exactly one")
    inp = inputs[0]
    if inp.name != bundle.input_name:
        raise ModelError(f"model.json names input {bundle.input_name!r} but the graph's input is {inp.name!r}")
    shape = list(inp.shape)
    size = bundle.preprocess.size
    if len(shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(shape[1:], (3, size, size))):
        raise ModelError(f"graph input shape {shape} does not take (N, 3, {size}, {size}) as model.json says")
    names = [o.name for o in outputs]
    if bundle.output_name not in names:
        raise ModelError(f"model.json names output {bundle.output_name!r} but the graph's outputs are {names}")
    return inp.name, bundle.output_name


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk
