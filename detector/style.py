"""The style encoder: an ONNX graph that maps an image to a unit-length style embedding.

A model directory (bundled: ``style-encoder``, the repository's ``models/style-encoder/``) holds ``model.onnx`` and a ``model.json`` card of
kind ``style-encoder``: preprocessing, the embedding's size, and the similarity threshold at which
the registry attributes an image to an artist, with how it was chosen. As with the detector's
bundle, the directory loads only when the card is complete and the ONNX file's sha256 matches it::

    enc = StyleEncoder.default()                    # the bundled one; or from_dir(PATH or NAME)
    e = enc.embed_one("suspect.png")                # (dim,) float32, unit length
    rows = enc.embed(["a.png", b"...", "broken.png"])  # arrays, or DecodeError for a bad source

A card may add a ``palette`` (since 0.3.0): the embedding is then the graph's output and the image's colour
palette side by side, weighted so that it stays unit length (:func:`palette_vectors`, :meth:`StyleEncoder.dim`).

numpy + Pillow + onnxruntime only. ``session.run`` is thread-safe, so one instance serves many threads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .bundle import ModelError, _has, check_kind, read_checked_card, write_card
from .decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DecodeError, Source, decode_image
from .preprocess import PreprocessConfig, preprocess

FORMAT_VERSION = 1
KIND = "style-encoder"
ONNX_FILE = "model.onnx"
CARD_FILE = "model.json"
REQUIRED_FIELDS = (
    "format_version", "kind", "name", "version", "backbone",
    "input.name", "input.size", "input.resize", "input.interpolation", "input.mean", "input.std",
    "input.layout", "input.pad_to_square",
    "output.name", "output.dim", "output.meaning",
    "similarity.threshold", "similarity.aggregate", "similarity.how_chosen",
    "metrics", "training_data", "onnx_sha256", "libraries",
)
_INPUT_TENSOR_KEYS = ("name", "layout", "dtype", "pad_to_square")
PALETTE_MIN_PIXELS = 20  # a page with fewer non-white pixels than this is counted whole, white included


def palette_vectors(x: np.ndarray, cfg: PreprocessConfig, bins: int, white_above: int) -> np.ndarray:
    """The colour palettes of a preprocessed batch ``(N, 3, S, S)`` (the encoder's own input, so training and
    serving count the same pixels): per image, the share of its pixels in each of ``bins**3`` RGB cells, pixels
    of the white page (every channel above ``white_above`` on the 0-255 scale) left out unless fewer than
    :data:`PALETTE_MIN_PIXELS` others remain; square-rooted, so the dot product of two palettes is their
    Bhattacharyya coefficient, and unit length. ``(N, bins**3)`` float32."""
    mean = np.asarray(cfg.mean, np.float32)[:, None]
    std = np.asarray(cfg.std, np.float32)[:, None]
    out = np.empty((len(x), bins ** 3), np.float32)
    for i, image in enumerate(x):
        rgb = np.clip((image.reshape(3, -1) * std + mean) * 255.0, 0.0, 255.0)
        ink = ~(rgb > white_above).all(axis=0)
        if ink.sum() >= PALETTE_MIN_PIXELS:
            rgb = rgb[:, ink]
        cell = np.minimum((rgb * (bins / 256.0)).astype(np.int64), bins - 1)
        counts = np.bincount((cell[0] * bins + cell[1]) * bins + cell[2], minlength=bins ** 3)
        root = np.sqrt(counts / counts.sum())
        out[i] = root / np.linalg.norm(root)
    return out


def embedding_dim(card: Mapping) -> int:
    """The size of a style encoder's embeddings, from its card: the graph's output, plus the palette's cells
    when the card has one."""
    palette = card.get("palette")
    return int(card["output"]["dim"]) + (int(palette["bins"]) ** 3 if palette else 0)


def join_palette(graph: np.ndarray, colours: np.ndarray, weight: float) -> np.ndarray:
    """The embedding of a card with a palette: ``[sqrt(1 - weight) x graph, sqrt(weight) x colours]``. Both
    parts are unit length, so the whole is too, and a cosine is (1 - weight) x the graph's + weight x the palettes'."""
    return np.concatenate([np.float32(np.sqrt(1.0 - weight)) * graph, np.float32(np.sqrt(weight)) * colours], axis=1)


def _check_palette(palette: object, where: str) -> None:
    if not isinstance(palette, Mapping):
        raise ModelError(f"{where}: palette must be an object")
    bins, weight, white = palette.get("bins"), palette.get("weight"), palette.get("white_above")
    if not (isinstance(bins, int) and 2 <= bins <= 16):
        raise ModelError(f"{where}: palette.bins must be an integer in [2, 16]")
    if not (isinstance(weight, (int, float)) and 0.0 < weight < 1.0):
        raise ModelError(f"{where}: palette.weight must be a number in (0, 1)")
    if not (isinstance(white, int) and 0 <= white <= 255):
        raise ModelError(f"{where}: palette.white_above must be an integer in [0, 255]")


def pad_to_square(image: Image.Image) -> Image.Image:
    """Pad an RGB image with white to a centred square, as ``mimicry.training.corpus.normalize_artwork``
    does, so that style statistics never see a squashed drawing."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - w) // 2, (side - h) // 2))
    return square


def parse_style_card(card: object, where: str = CARD_FILE) -> PreprocessConfig:
    """Check a style-encoder card and return its preprocessing; raise :class:`ModelError`."""
    if not isinstance(card, Mapping):
        raise ModelError(f"{where}: expected a JSON object, got {type(card).__name__}")
    check_kind(card, KIND, where, default="detector")  # cards without a kind are older detector cards
    if card.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{where}: format_version {card.get('format_version')!r} is not supported "
                         f"(supported: {FORMAT_VERSION})")
    missing = [f for f in REQUIRED_FIELDS if not _has(card, f)]
    if missing:
        raise ModelError(f"{where}: required field(s) missing: {', '.join(missing)}")
    inp = card["input"]
    if inp["layout"] != "NCHW":
        raise ModelError(f"{where}: input.layout {inp['layout']!r} is not supported (only NCHW)")
    if not (isinstance(card["onnx_sha256"], str) and len(card["onnx_sha256"]) == 64):
        raise ModelError(f"{where}: onnx_sha256 must be 64 hex digits")
    sim = card["similarity"]
    if not isinstance(sim["threshold"], (int, float)) or not -1.0 <= sim["threshold"] <= 1.0:
        raise ModelError(f"{where}: similarity.threshold must be a number in [-1, 1]")
    from .registry import AGGREGATES  # registry imports this module's users, not this module

    if sim["aggregate"] not in AGGREGATES:
        raise ModelError(f"{where}: similarity.aggregate {sim['aggregate']!r} is not one of {AGGREGATES}")
    far = sim.get("false_attribution")
    if far is not None and not (isinstance(far, Mapping) and isinstance(far.get("rate"), (int, float))
                                and 0.0 <= far["rate"] <= 1.0 and isinstance(far.get("measured_on"), str)):
        raise ModelError(f"{where}: similarity.false_attribution must be an object with a rate in [0, 1] "
                         "and the text measured_on")
    if not isinstance(card["output"]["dim"], int) or card["output"]["dim"] < 1:
        raise ModelError(f"{where}: output.dim must be a positive integer")
    if "palette" in card:
        _check_palette(card["palette"], where)
    try:
        return PreprocessConfig.from_dict({k: v for k, v in inp.items() if k not in _INPUT_TENSOR_KEYS})
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: input: {exc}") from None


def write_style_card(model_dir: str | os.PathLike, card: Mapping) -> dict:
    """Write a style encoder's ``model.json`` (:func:`~detector.bundle.write_card`), checked as
    :meth:`StyleEncoder.from_dir` will check it. Returns the card as written."""
    return write_card(model_dir, card, parse_style_card, what="style")


class StyleEncoder:
    """A loaded style encoder. Build with :meth:`from_dir`."""

    def __init__(self, path: Path, card: dict, session, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.path = path
        self.card = card
        self.config = parse_style_card(card, where=str(path / CARD_FILE))
        self.session = session
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or inputs[0].name != card["input"]["name"]:
            raise ModelError(f"{path / ONNX_FILE}: the graph's inputs {[i.name for i in inputs]} do not match "
                             f"model.json's {card['input']['name']!r}")
        if card["output"]["name"] not in [o.name for o in outputs]:
            raise ModelError(f"{path / ONNX_FILE}: no output named {card['output']['name']!r}")

    @classmethod
    def from_dir(cls, path: str | os.PathLike, *, providers: list[str] | None = None,
                 intra_op_threads: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> StyleEncoder:
        """Load and check ``path/model.json`` and ``path/model.onnx``; :class:`ModelError` if either
        is missing or invalid, or the ONNX file is not the one the card was written for. ``path``
        may be a bare name, found as :func:`mimicry.detector.locations.resolve_model_dir` says."""
        from .detector import open_session
        from .locations import resolve_model_dir

        path = resolve_model_dir(path, what="style encoder")
        card, _ = read_checked_card(path, parse_style_card, what="style encoder")
        session = open_session(path / ONNX_FILE, providers=providers, intra_op_threads=intra_op_threads)
        return cls(path, card, session, max_bytes=max_bytes, max_pixels=max_pixels)

    @classmethod
    def default(cls, **kwargs) -> StyleEncoder:
        """The bundled style encoder (or ``$MIMICRY_MODELS/style-encoder``); ``kwargs`` as :meth:`from_dir`."""
        from .locations import DEFAULT_ENCODER

        return cls.from_dir(DEFAULT_ENCODER, **kwargs)

    # ------------------------------------------------------------------------- card

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def dim(self) -> int:
        """The embedding's size (:func:`embedding_dim`)."""
        return embedding_dim(self.card)

    @property
    def threshold(self) -> float:
        """Similarity at or above which an image is attributed to an artist (see the card's ``how_chosen``)."""
        return float(self.card["similarity"]["threshold"])

    @property
    def false_attribution(self) -> dict | None:
        """The card's ``similarity.false_attribution`` (what a match at the threshold claims: the
        measured share of works by non-enrolled authors attributed to someone), or None."""
        value = self.card["similarity"].get("false_attribution")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def aggregate(self) -> str:
        """How work similarities become an artist's similarity (``mimicry.detector.registry.artist_scores``)."""
        return str(self.card["similarity"]["aggregate"])

    def identity(self) -> dict:
        """What a registry records: to refuse embeddings from another encoder, and to score artists
        with the aggregate this encoder's threshold was chosen for."""
        return {"name": self.name, "version": self.version, "onnx_sha256": self.card["onnx_sha256"], "dim": self.dim,
                "aggregate": self.aggregate, "threshold": self.threshold}

    # ------------------------------------------------------------------------- embedding

    def load(self, source: Source) -> tuple[np.ndarray, Image.Image]:
        """Decode (safely) and preprocess one source: ``(input array, decoded RGB image)``."""
        image = decode_image(source, max_bytes=self.max_bytes, max_pixels=self.max_pixels,
                             draft_size=self.config.size)
        return self.prepare(image), image

    def prepare(self, image: Image.Image) -> np.ndarray:
        """The encoder's input ``(3, size, size)`` for an already decoded RGB image (padded to a
        square when the card says so): what :meth:`load` does after its decode."""
        square = pad_to_square(image) if self.card["input"]["pad_to_square"] else image
        return preprocess(square, self.config)

    def embed_arrays(self, x: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, dim)`` of a preprocessed batch ``(N, 3, size, size)``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = (3, self.config.size, self.config.size)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"expected a batch of shape (N, {', '.join(map(str, expected))}), got {x.shape}")
        if not len(x):
            return np.zeros((0, self.dim), np.float32)
        out = self.session.run([self.card["output"]["name"]], {self.card["input"]["name"]: x})[0]
        out = np.asarray(out, dtype=np.float32).reshape(len(x), int(self.card["output"]["dim"]))
        palette = self.card.get("palette")
        if not palette:
            return out
        colours = palette_vectors(x, self.config, int(palette["bins"]), int(palette["white_above"]))
        return join_palette(out, colours, float(palette["weight"]))

    def embed(self, sources: Iterable[Source], batch_size: int = 32) -> list[np.ndarray | DecodeError]:
        """One embedding per source, in order; a source that cannot be decoded gets its DecodeError."""
        return [r if isinstance(r, DecodeError) else r[0] for r in self._run(sources, batch_size, keep=False)]

    def embed_one(self, source: Source) -> np.ndarray:
        """The embedding of one source; raises :class:`~detector.decode.DecodeError`."""
        result = self.embed([source])[0]
        if isinstance(result, DecodeError):
            raise result
        return result

    def embed_with_images(self, sources: Iterable[Source], batch_size: int = 32, *,
                          shrink: Callable[[Image.Image], Any] | None = None,
                          full_size: Callable[[Image.Image], Any] | None = None) -> list:
        """For enrolment: per source ``(embedding, decoded image, bytes)`` or a DecodeError. The bytes
        are the file's own for paths and encoded inputs, a PNG of the pixels for images and arrays,
        so their sha256 identifies the work. With ``shrink`` (a function that shrinks an image in place,
        :func:`~mimicry.detector.copies.shrink_in_place`) the decoded image is shrunk as soon as the
        encoder's input is made, so a batch never holds more than one full-size decode. With ``full_size``, each tuple gets a fourth item:
        ``full_size(image)`` of the decoded image before it was shrunk (the registry's copy signature)."""
        return self._run(sources, batch_size, keep=True, shrink=shrink, full_size=full_size)

    def _run(self, sources: Iterable[Source], batch_size: int, keep: bool,
             shrink: Callable[[Image.Image], Any] | None = None,
             full_size: Callable[[Image.Image], Any] | None = None) -> list:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sources = list(sources)
        results: list = []
        for start in range(0, len(sources), batch_size):
            loaded = []
            for src in sources[start:start + batch_size]:
                try:
                    raw = _raw_bytes(src, self.max_bytes) if keep else None
                    x, image = self.load(raw if raw is not None else src)  # decode exactly the bytes hashed
                    if keep and raw is None:
                        buf = io.BytesIO()
                        image.save(buf, format="PNG")
                        raw = buf.getvalue()
                    extra = (full_size(image),) if full_size is not None else ()
                    if shrink is not None:
                        shrink(image)
                    loaded.append((x, image, raw, *extra))
                except DecodeError as exc:
                    loaded.append(exc)
            good = [r for r in loaded if not isinstance(r, DecodeError)]
            emb = iter(self.embed_arrays(np.stack([r[0] for r in good])) if good else [])
            for r in loaded:
                results.append(r if isinstance(r, DecodeError) else (next(emb), *r[1:]))
        return results


def _raw_bytes(source: Source, max_bytes: int) -> bytes | None:
    """The bytes of a path or an encoded source (size-checked first); None for images and arrays."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DecodeError("not_found", f"cannot read {path}: {exc.strerror or exc}") from None
        if not path.is_file():
            raise DecodeError("not_found", f"not a file: {path}")
        if size == 0:
            raise DecodeError("empty", "0 bytes")
        if size > max_bytes:
            raise DecodeError("too_large", f"{size:,} bytes exceeds the limit of {max_bytes:,}")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DecodeError("not_found", f"cannot read {path}: {exc.strerror or exc}") from None
    return None
