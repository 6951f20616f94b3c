"""Attribution: whose enrolled style an image is closest to, and which enrolled work it copies.

One component for every door (Python, ``mimicry scan`` on either engine, ``mimicry check``, HTTP):
a style encoder (:class:`~detector.style.StyleEncoder`) and a registry of enrolled artists
(:class:`~detector.registry.Registry`). The detector takes it as an option and puts its evidence
into each verdict from the decode it makes anyway (no second decode)::

    from mimicry.detector import Attribution, Detector

    with Attribution.open("registry.sqlite3") as att:          # the bundled style encoder by default
        det = Detector.from_dir("default", attribution=att)
        v = det.predict("suspect.png")[0]
        v.evidence["artists"]   # nearest enrolled artists, most similar first
        v.evidence["copy_of"]   # the enrolled work it is a copy of, or None

The evidence has one shape everywhere (:class:`Evidence`, ``to_dict``):

- ``artists``: up to ``top_k`` artists, most similar first, each
  ``{"artist", "similarity", "passes", "nearest_works": [{"work_id", "source", "sha256", "similarity"}]}``;
  ``passes`` says whether ``similarity`` reaches the encoder's threshold (its card says how that was
  chosen): a "match". A match is a calibrated claim: at the encoder's threshold, a stated share of works
  by authors who are *not* enrolled are attributed to someone (the card's ``similarity.how_chosen`` and
  ``similarity.false_attribution``; :attr:`Attribution.false_attribution`);
- ``attributed_to``: the name of the artist the image is attributed to (the first of ``artists`` when
  it passes), or None: "no enrolled artist" (the answer abstains when no enrolled style is close
  enough to claim);
- ``copy_of``: ``{"artist", "work_id", "source", "sha256", "distance", "hash_bits"}`` of the enrolled
  work the image is a copy of (:mod:`mimicry.detector.copies`), whatever the style similarity; None
  when it is a copy of none.

When nobody has enrolled works there is nothing to say: :meth:`Attribution.active` is False and a
verdict carries neither key. A door may show less of the evidence than this (the HTTP service hides
works from callers who may not see them) but never assembles its own.

numpy + Pillow + onnxruntime only, as the rest of the library.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from . import copies
from .copies import CopyMatch
from .registry import ArtistMatch, Registry

DEFAULT_TOP_K = 3
DEFAULT_WORKS_PER_ARTIST = 3
DEFAULT_ENCODER = "style-encoder"  # mimicry.detector.locations.DEFAULT_ENCODER
EVIDENCE_KEYS = ("artists", "attributed_to", "copy_of")


class Prepared(NamedTuple):
    """What attribution needs of one decoded image: the style encoder's input ``(3, size, size)``
    and the image's copy signature."""

    x: np.ndarray
    signature: copies.Signature


def artist_to_dict(m: ArtistMatch) -> dict:
    return {"artist": m.artist, "similarity": m.similarity, "passes": m.passes,
            "nearest_works": [{"work_id": w.work_id, "source": w.source, "sha256": w.sha256,
                               "similarity": w.similarity} for w in m.nearest_works]}


def copy_to_dict(c: CopyMatch | None) -> dict | None:
    if c is None:
        return None
    return {"artist": c.artist, "work_id": c.work_id, "source": c.source, "sha256": c.sha256,
            "distance": c.distance, "hash_bits": c.hash_bits}


@dataclasses.dataclass(frozen=True)
class Evidence:
    """The attribution of one image: ``artists`` (most similar first) and ``copy_of`` (or None)."""

    artists: list[ArtistMatch]
    copy_of: CopyMatch | None

    @property
    def attributed_to(self) -> str | None:
        """The artist the image is attributed to: the most similar one if it passes the threshold,
        else None ("no enrolled artist")."""
        return self.artists[0].artist if self.artists and self.artists[0].passes else None

    def to_dict(self) -> dict:
        """``{"artists": [...], "attributed_to": name or None, "copy_of": {...} or None}``: the keys a
        verdict's evidence gets."""
        return {"artists": [artist_to_dict(m) for m in self.artists], "attributed_to": self.attributed_to,
                "copy_of": copy_to_dict(self.copy_of)}


class Attribution:
    """A style encoder and a registry: evidence of whose style an image is closest to.

    ``top_k`` artists are reported, each with its ``works_per_artist`` nearest works; with ``artist``
    only that artist (by any form of its name the registry finds; :class:`RegistryError` if unknown).
    The registry scores artists the way the encoder's threshold was chosen only when it was opened
    with the encoder's aggregate (:meth:`open` does that). A registry whose works another encoder embedded
    is refused (:class:`RegistryError`). Thread-safe as its parts are.
    """

    def __init__(self, encoder, registry: Registry, *, top_k: int = DEFAULT_TOP_K,
                 works_per_artist: int = DEFAULT_WORKS_PER_ARTIST, artist: str | None = None,
                 owns_registry: bool = False):
        if top_k < 1 or works_per_artist < 0:
            raise ValueError(f"top_k must be >= 1 and works_per_artist >= 0, got {top_k}, {works_per_artist}")
        registry.check_encoder(encoder.identity())  # another encoder's embeddings would be compared silently
        self.encoder = encoder
        self.registry = registry
        self.top_k = top_k
        self.works_per_artist = works_per_artist
        self.artist = registry.get_artist(artist).name if artist is not None else None
        self._owns_registry = owns_registry

    @classmethod
    def open(cls, registry: str | os.PathLike | None = None, encoder: str | os.PathLike = DEFAULT_ENCODER, *,
             providers: list[str] | None = None, intra_op_threads: int | None = None, migrate: bool = True,
             **kwargs) -> Attribution:
        """Load the style encoder (a directory, or a name as :meth:`StyleEncoder.from_dir` resolves it)
        and open the registry (a SQLite file or a ``postgresql://`` URL; default as
        :meth:`Registry.open` says) with the encoder's aggregate. :meth:`close` closes the registry.
        ``kwargs`` as the constructor's. Raises ModelError or RegistryError."""
        from .style import StyleEncoder

        enc = StyleEncoder.from_dir(encoder, providers=providers, intra_op_threads=intra_op_threads)
        reg = Registry.open(registry, aggregate=enc.aggregate, migrate=migrate)
        try:
            return cls(enc, reg, owns_registry=True, **kwargs)
        except BaseException:
            reg.close()
            raise

    def close(self) -> None:
        """Close the registry if :meth:`open` opened it."""
        if self._owns_registry:
            self.registry.close()

    def __enter__(self) -> Attribution:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def threshold(self) -> float:
        """The similarity at or above which an artist ``passes`` (the encoder's)."""
        return self.encoder.threshold

    @property
    def false_attribution(self) -> dict | None:
        """What a match claims, as the encoder's card measured it (``similarity.false_attribution``):
        ``{"rate", "measured_on", ...}``, the share of works by authors who are not enrolled that are
        attributed to someone at the threshold; None for a card that does not say."""
        return self.encoder.false_attribution

    @property
    def input_size(self) -> int:
        """The side of the encoder's input: a decode for both models keeps at least this."""
        return self.encoder.config.size

    def active(self) -> bool:
        """Whether anyone has enrolled works (else there is nothing to attribute to)."""
        return self.registry.has_works()

    # ------------------------------------------------------------------------- the work

    def prepare(self, image: Image.Image, sha256: str | None = None) -> Prepared:
        """What :meth:`evidence` needs of one decoded RGB image (the detector's decode); ``sha256`` of
        its file, when it has one, finds an enrolled file as itself whatever its pixels."""
        return Prepared(self.encoder.prepare(image), self.registry.copy_signature(image, sha256))

    def embed(self, prepared: Sequence[Prepared]) -> np.ndarray:
        """Style embeddings ``(N, dim)`` of prepared images, in one encoder batch."""
        if not prepared:
            return np.zeros((0, self.encoder.dim), np.float32)
        return self.encoder.embed_arrays(np.stack([p.x for p in prepared]))

    def evidence(self, embeddings: np.ndarray, signatures: Sequence[copies.Signature]) -> list[Evidence]:
        """The evidence for a batch of images, from their embeddings (``(N, dim)``, as :meth:`embed`
        makes them, or one at a time by a caller that batches the encoder itself) and signatures."""
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(len(signatures), -1)
        if self.artist is not None:
            matches = [[self.registry.similarity_to(e, self.artist, threshold=self.threshold,
                                                    works_per_artist=self.works_per_artist)] for e in embeddings]
        else:
            matches = self.registry.match_batch(embeddings, self.top_k, threshold=self.threshold,
                                                works_per_artist=self.works_per_artist)
        return [Evidence(m, self.registry.find_copy(s, e)) for m, s, e in zip(matches, signatures, embeddings)]

    def attribute(self, images: Sequence[Image.Image]) -> list[Evidence]:
        """:meth:`prepare`, :meth:`embed` and :meth:`evidence` for decoded images."""
        prepared = [self.prepare(im) for im in images]
        return self.evidence(self.embed(prepared), [p.signature for p in prepared])


def closest(evidence: dict) -> dict | None:
    """The most similar artist of a verdict's evidence (a dict of ``artists``), or None."""
    artists = evidence.get("artists") or []
    return artists[0] if artists else None
