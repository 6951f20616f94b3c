"""The artist registry: enrolled artists, the style embeddings of their works, and attribution.

An embedded SQLite database (stdlib ``sqlite3``) in WAL mode by default, or a PostgreSQL database
given by URL (``postgresql://user@host/db``, needs the ``postgres`` extra) that several replicas of
the service share; the SQL that differs between the two lives in :mod:`mimicry.detector.registry_backends`::

    from mimicry.detector.registry import Registry
    from mimicry.detector.style import StyleEncoder

    enc = StyleEncoder.default()  # the bundled encoder; or StyleEncoder.from_dir(PATH)
    with Registry.open() as reg:  # $MIMICRY_REGISTRY or the per-user default; scores as the encoder's card says
        report = reg.enrol("Jane Doe", ["a.png", "b.png"], enc, consent="email of 2026-11-24")
        print(report.added, report.skipped)
        for m in reg.match(enc.embed_one("suspect.png"), k=3, threshold=enc.threshold):
            print(m.artist, m.similarity, m.passes, [w.source for w in m.nearest_works])

What is stored: artists (name, consent note, created time) and, per work, its style embedding
(float32), the sha256 of the file's bytes, a small WebP thumbnail, the file name it came from and
its copy signature (:mod:`mimicry.detector.copies`: a 64-bit hash and a 32 x 32 grey thumbnail), by
which :meth:`Registry.find_copy` recognises copies of it whatever the style threshold says.
The original file is stored only when asked (``keep_originals=True``). One file (one sha256) is
enrolled under one artist: a file already enrolled under another artist is a reported skip
(``enrolled_elsewhere``, whose message names no one), as one already enrolled under the same artist
is (``duplicate``).

Names (:func:`normalise_name`): stored in NFC without surrounding spaces, runs of spaces made one;
refused with :class:`RegistryError` (``code="invalid_name"``) when they hold invisible, format or
control characters, mix scripts (a Cyrillic ``а`` among Latin letters; the combinations Japanese,
Chinese and Korean names use are allowed), are over 200 characters, or, when they hold ``/``, have an
empty, ``.``, ``..`` or ``works`` part (the HTTP API could not address them). Two names with the same
:func:`name_key` (compared ignoring case, Unicode form and width, invisible characters and letters of
another script drawn like Latin ones) are one artist: a second is refused (``code="artist_exists"``),
and every lookup finds the artist by any such form of its name. Artists stored before these rules
keep their names as they were (migration 3 gives each its key; the younger of two whose keys clash
is then found by its exact stored name only).

Consistency: the schema is versioned (``schema_version`` holds one row per applied migration;
:data:`MIGRATIONS` are applied in order, each in its own transaction, on open). An enrolment is one
transaction, the artist's creation included, so a process killed half-way leaves the artist either
fully enrolled or absent. Write transactions run one at a time (SQLite's write lock; on PostgreSQL
an advisory lock, which migrations take too, so replicas starting together do not race).
Embeddings are computed before the transaction opens, so the write lock is held only for the inserts.

Threads: one connection per :class:`Registry` (SQLite's opened with ``check_same_thread=False``);
every use of it is serialised by one lock, so an instance can be shared by the threads of a web
service. Matching reads an in-memory matrix of all embeddings (rows grouped by artist), rebuilt
after this instance writes or when another connection (another process, another replica) has:
SQLite's ``PRAGMA data_version`` tells, and on PostgreSQL a counter that every write transaction
bumps, read with one ``SELECT`` before each match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mimicry.detector import copies
from mimicry.detector.copies import CopyMatch, make_thumbnail
from mimicry.detector.decode import DecodeError, decode_image
from mimicry.detector.locations import private_dir
from mimicry.detector.registry_backends import SQLITE, Dialect, dialect_of, is_url, postgres, redact

ENV_VAR = "MIMICRY_REGISTRY"
DB_FILE = "registry.sqlite3"
AGGREGATES = ("max", "top3", "centroid")
DEFAULT_AGGREGATE = "max"
# Ordered schema migrations: (version, description, SQL). Append only; never edit a released one.
# ``{pk}`` (an auto-numbered key), ``{int}`` (a 64-bit integer, the type of such keys) and ``{blob}``
# are filled in by each database's dialect: SQLite's SQL is the same as released.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "artists and their works' embeddings", """
        CREATE TABLE artists (
            id         {pk},
            name       TEXT NOT NULL UNIQUE,
            consent    TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        CREATE TABLE works (
            id         {pk},
            artist_id  {int} NOT NULL REFERENCES artists(id) ON DELETE CASCADE,
            sha256     TEXT NOT NULL,
            embedding  {blob} NOT NULL,
            thumbnail  {blob} NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (artist_id, sha256)
        );
    """),
    (2, "encoder binding, work source names, optional originals", """
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        ALTER TABLE works ADD COLUMN source TEXT NOT NULL DEFAULT '';
        ALTER TABLE works ADD COLUMN original {blob};
        CREATE INDEX works_by_artist ON works (artist_id);
    """),
    (3, "artists' name keys (unique ignoring case, form and look-alikes), works by sha256", """
        ALTER TABLE artists ADD COLUMN name_key TEXT;
        CREATE UNIQUE INDEX artists_by_name_key ON artists (name_key);
        CREATE INDEX works_by_sha256 ON works (sha256);
    """),
    (4, "copy signatures of works (difference hash, grey thumbnail, aspect ratio)", """
        ALTER TABLE works ADD COLUMN copy_hash {blob};
        ALTER TABLE works ADD COLUMN copy_thumb {blob};
        ALTER TABLE works ADD COLUMN copy_aspect REAL;
    """),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
MAX_NAME_LENGTH = 200


class RegistryError(Exception):
    """A registry operation that cannot be done, with the reason (unknown artist, wrong encoder...).

    ``code`` says which kind: ``artist_not_found``, ``artist_exists``, ``invalid_name``,
    ``other_encoder`` (the works were embedded by another style encoder), ``reembed_failed``, or
    ``registry_error`` for the rest."""

    def __init__(self, message: str, code: str = "registry_error"):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Artist:
    name: str
    consent: str
    created_at: str
    works: int


@dataclasses.dataclass(frozen=True)
class WorkMatch:
    """An enrolled work and its cosine similarity to the query."""

    work_id: int
    source: str
    sha256: str
    similarity: float


@dataclasses.dataclass(frozen=True)
class ArtistMatch:
    """An artist's similarity to the query (see :func:`artist_scores`); ``passes`` is whether it
    reaches the threshold given to :meth:`Registry.match` (None when no threshold was given)."""

    artist: str
    similarity: float
    passes: bool | None
    nearest_works: list[WorkMatch]


@dataclasses.dataclass
class EnrolReport:
    """What an enrolment did: works added, and the sources skipped with a code and a message
    (codes: the decode errors of ``mimicry.detector.decode``, and ``duplicate``)."""

    artist: str
    added: int = 0
    skipped: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    created: bool = False


@dataclasses.dataclass
class ReembedReport:
    """What :meth:`Registry.reembed` did: the works embedded again, how many from their kept originals
    and how many from their stored thumbnails, and the encoder they are now bound to."""

    works: int
    encoder: str
    from_originals: int = 0
    from_thumbnails: int = 0


# ----------------------------------------------------------------------------- names

# Characters that show nothing but are not of a "format" or "control" category (Unicode's
# Default_Ignorable_Code_Point letters and marks, variation selectors), and the blank Braille cell.
_INVISIBLE = frozenset([0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0,
                        *range(0x180B, 0x1810), *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])
_INVISIBLE_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
# Letters of other scripts drawn like a Latin letter (after case folding): what makes a whole-script
# look-alike, such as a Cyrillic "Сесе" for "Cece". Mixed-script look-alikes are refused outright.
_LOOKALIKES = str.maketrans({
    **dict(zip("авеѕіјкмнорстухһԁԛԝӏүь", "abesijkmhopctyxhdqwlyb")),  # Cyrillic
    **dict(zip("αβεζηικμνορτυχωγ", "abezhikmnoptyxwy")),  # Greek
    **dict(zip("ıȷɡ", "ijg")),  # Latin letters drawn like others
})
# Scripts that names may combine (UTS #39's "highly restrictive" level): Japanese, Chinese, Korean.
_SCRIPT_SETS = ({"Latin", "Han", "Hiragana", "Katakana"}, {"Latin", "Han", "Bopomofo"}, {"Latin", "Han", "Hangul"})
_SCRIPT_OF_WORD = {"CJK": "Han", "IDEOGRAPHIC": "Han", "KANGXI": "Han"}


def _invisible(ch: str) -> bool:
    return ord(ch) in _INVISIBLE or unicodedata.category(ch) in _INVISIBLE_CATEGORIES


def _script(ch: str) -> str | None:
    """A letter's script, from its Unicode name (``LATIN SMALL LETTER A``: Latin); None for what
    every script uses (digits, punctuation, spaces, marks, modifier letters)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    words = unicodedata.name(ch, "UNKNOWN").split()
    if words[0] in ("MODIFIER", "KATAKANA-HIRAGANA"):
        return None
    return _SCRIPT_OF_WORD.get(words[0], words[0].title())


def normalise_name(name: str) -> str:
    """An artist's name as it is stored: NFC, no surrounding spaces, one space between words.
    :class:`RegistryError` (``code="invalid_name"``) for a name that is empty, too long, holds an
    invisible, format or control character, mixes scripts, or holds ``/`` with an empty, ``.``,
    ``..`` or ``works`` part."""
    if not isinstance(name, str) or not name.strip():
        raise RegistryError("an artist's name must be a non-empty string", "invalid_name")
    name = unicodedata.normalize("NFC", name).strip()
    for ch in name:
        if _invisible(ch):
            what = unicodedata.name(ch, "a control character")
            raise RegistryError(f"an artist's name may not hold invisible, format or control characters; "
                                f"{name!r} holds U+{ord(ch):04X} ({what})", "invalid_name")
    name = " ".join(name.split())
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(f"an artist's name may have at most {MAX_NAME_LENGTH} characters, "
                            f"not {len(name)}", "invalid_name")
    if "/" in name and any(part.strip() in ("", ".", "..", "works") for part in name.split("/")):
        raise RegistryError(f"{name!r}: in a name with '/', no part between slashes may be empty, '.', '..' or "
                            "'works' (the HTTP API could not address it)", "invalid_name")
    scripts = {s for s in map(_script, unicodedata.normalize("NFKC", name)) if s is not None}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_SETS):
        raise RegistryError(f"{name!r} mixes scripts ({', '.join(sorted(scripts))}), as look-alike names do; "
                            "write it in one script", "invalid_name")
    return name


def name_key(name: str) -> str:
    """What two names must differ in to be two artists: the name without case (folded), Unicode
    form and width (NFKC), invisible characters or extra spaces, with letters of other scripts
    drawn like Latin ones read as those. Defined for any string, valid name or not."""
    s = "".join(ch for ch in unicodedata.normalize("NFKC", name) if not _invisible(ch))
    s = " ".join(unicodedata.normalize("NFKC", s.casefold()).split())
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", s).translate(_LOOKALIKES))


def default_path() -> Path:
    """``$MIMICRY_REGISTRY`` if set, else ``registry.sqlite3`` in the per-user data folder
    (:func:`mimicry.detector.locations.data_dir`: ``$MIMICRY_HOME``, else ``~/.local/share/mimicry``
    on Linux, ``~/Library/Application Support/mimicry`` on macOS, ``%LOCALAPPDATA%\\mimicry`` on Windows)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    from .locations import data_dir

    return data_dir() / DB_FILE


def default_location() -> Path | str:
    """Where :meth:`Registry.open` goes by default: ``$MIMICRY_REGISTRY`` when it is a
    ``postgresql://`` URL, else :func:`default_path`."""
    env = os.environ.get(ENV_VAR)
    return env if is_url(env) else default_path()


# ----------------------------------------------------------------------------- scoring


def group_by_artist(sorted_ids: np.ndarray, n_artists: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, counts)`` of each artist's contiguous rows, for artist ids ``0..n_artists-1``
    sorted ascending (every artist must have at least one row)."""
    counts = np.bincount(np.asarray(sorted_ids, dtype=np.int64), minlength=n_artists)
    if (counts == 0).any():
        raise ValueError("every artist needs at least one work")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return starts, counts


def artist_scores(sims: np.ndarray, starts: np.ndarray, aggregate: str = DEFAULT_AGGREGATE,
                  embeddings: np.ndarray | None = None) -> np.ndarray:
    """Artist similarities ``(Q, A)`` from work similarities ``sims`` ``(Q, W)`` whose columns are
    grouped by artist (artist ``j`` owns columns ``starts[j]:starts[j+1]``).

    ``max``: the nearest work's cosine similarity. ``top3``: the mean of the three nearest (fewer if
    the artist has fewer). ``centroid``: cosine to the mean of the artist's (unit) embeddings, which
    needs ``embeddings`` (W, D)."""
    sims = np.asarray(sims, dtype=np.float32)
    if aggregate == "max":
        return np.maximum.reduceat(sims, starts, axis=1)
    ends = np.append(starts[1:], sims.shape[1])
    if aggregate == "centroid":
        if embeddings is None:
            raise ValueError("aggregate 'centroid' needs the embeddings")
        sums = np.add.reduceat(np.asarray(embeddings, np.float64), starts, axis=0)
        norms = np.linalg.norm(sums, axis=1)
        return (np.add.reduceat(sims.astype(np.float64), starts, axis=1) / np.maximum(norms, 1e-12)).astype(np.float32)
    if aggregate == "top3":
        out = np.empty((sims.shape[0], len(starts)), np.float32)
        for j, (s, e) in enumerate(zip(starts, ends)):
            seg = sims[:, s:e]
            m = min(3, e - s)
            out[:, j] = -np.partition(-seg, m - 1, axis=1)[:, :m].mean(axis=1) if m < e - s else seg.mean(axis=1)
        return out
    raise ValueError(f"unknown aggregate {aggregate!r}; known: {AGGREGATES}")


# OpenBLAS spreads one large matrix-vector product over all cores; on a busy 2-core host the threads'
# hand-offs cost more than they save (bench/registry_benchmark.py, 100,000 x 128: 16 ms a query against
# 2.3 ms on one thread). Row blocks under its threading threshold keep each product on the calling
# thread, without touching the process-wide BLAS settings; the results are bit-identical.
_GEMV_BLOCK_ELEMENTS = 131_072


def similarities(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``matrix @ q`` (float32 ``(W, D)`` by ``(D,)``), computed in row blocks on this thread."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    out = np.empty(len(matrix), np.float32)
    step = max(1, _GEMV_BLOCK_ELEMENTS // max(1, matrix.shape[1]))
    for s in range(0, len(matrix), step):
        np.dot(matrix[s:s + step], q, out=out[s:s + step])
    return out


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first (``argpartition``, then a sort of ``k``)."""
    k = min(k, len(values))
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-values, k - 1)[:k] if k < len(values) else np.arange(len(values))
    return part[np.argsort(-values[part], kind="stable")]


@dataclasses.dataclass(frozen=True)
class _Index:
    """All embeddings in memory, rows grouped by artist: what matching reads. Work details (source,
    sha256) stay in the database and are fetched for the few nearest works only."""

    matrix: np.ndarray  # (W, D) float32, unit rows
    work_ids: np.ndarray  # (W,)
    artists: list[str]  # (A,)
    starts: np.ndarray  # (A,)
    centroids: np.ndarray  # (A, D) float32: each artist's mean embedding, unit length
    aggregate: str  # how artists are scored (see Registry.aggregate)
    copy_hashes: np.ndarray  # (W,) uint64: each work's dhash (copies.Signature), 0 where it has none
    has_signature: np.ndarray  # (W,) bool

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def segment(self, j: int) -> tuple[int, int]:
        """Rows of artist ``j``."""
        return int(self.starts[j]), int(self.starts[j + 1]) if j + 1 < len(self.starts) else len(self.matrix)


# ----------------------------------------------------------------------------- the registry


class Registry:
    """An open registry database. Use :meth:`open`; close with :meth:`close` or a ``with`` block."""

    def __init__(self, conn, path: Path | str, aggregate: str | None = None, *, dialect: Dialect = SQLITE,
                 reconnect: Callable[[], Any] | None = None, write_timeout: float = 30.0):
        if aggregate is not None and aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}; known: {AGGREGATES}")
        self._conn = conn
        self._dialect = dialect
        self._reconnect = reconnect  # a new connection, for when the server has dropped this one
        self._in_transaction = False
        self.path = path  # the SQLite file, or the PostgreSQL URL without its password
        self._aggregate = aggregate
        self._lock = threading.RLock()
        # Writers wait for another connection's write lock on this, which lets go of _lock while waiting:
        # reads (the attribution of every upload) never wait behind a writer that waits for the database.
        self._write_turn = threading.Condition(self._lock)
        self.write_timeout = write_timeout  # seconds a write waits for another connection's write lock
        self._index: _Index | None = None
        self._index_version: tuple[int, int] | None = None
        self._writes = 0

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, aggregate: str | None = None,
             timeout: float = 30.0, migrate: bool = True) -> Registry:
        """Open the registry at ``path`` (default: :func:`default_location`) and apply pending
        migrations. A ``postgresql://user:password@host:port/db`` URL (a string) opens that
        PostgreSQL database, which must exist; anything else is a SQLite file, created with its
        folder if needed and switched to WAL. Raises :class:`RegistryError` if the database is not
        a registry this version can use, or cannot be reached.

        ``aggregate`` (see :func:`artist_scores`) defaults to the one in the card of the encoder the
        stored embeddings were made with, which is what its threshold was chosen for. ``timeout``
        is how long to wait for another writer's lock (and, on PostgreSQL, to connect)."""
        location = path if path is not None else default_location()
        if is_url(location):
            try:
                dialect, where = postgres(), redact(location)
            except ImportError as exc:
                raise RegistryError(str(exc)) from None
            try:
                conn = dialect.connect(location, timeout)
            except dialect.database_errors as exc:
                raise RegistryError(f"cannot connect to the registry database {where}: {exc}") from None
        else:
            location = Path(location)
            if str(location).startswith(("postgresql:/", "postgres:/")):
                raise RegistryError(f"{location} is a PostgreSQL URL that lost a '/' of its '//' on its way through "
                                    f"a file path: give the URL as a string, or in ${ENV_VAR}")
            if location.exists() and not location.is_file():
                raise RegistryError(f"registry path {location} exists and is not a file")
            dialect, where = SQLITE, location
            try:
                private_dir(location.parent)  # a folder made for it is the owner's only (0700)
                conn = dialect.connect(location, timeout)
            except sqlite3.DatabaseError as exc:
                raise RegistryError(f"{where} is not a usable registry database: {exc}") from None
            except OSError as exc:  # a file where a folder should be, a folder this user may not write to
                raise RegistryError(f"cannot open the registry at {where}: {exc.strerror or exc}") from None
        try:
            if migrate:
                migrate_to(conn, SCHEMA_VERSION)
            else:
                v = schema_version(conn)
                if v != SCHEMA_VERSION:
                    raise RegistryError(f"{where} has schema version {v}; this version needs {SCHEMA_VERSION}")
        except dialect.database_errors as exc:
            conn.close()
            raise RegistryError(f"{where} is not a usable registry database: {exc}") from None
        except BaseException:
            conn.close()
            raise
        reconnect = (lambda: dialect.connect(location, timeout)) if dialect is not SQLITE else None
        return cls(conn, where, aggregate, dialect=dialect, reconnect=reconnect, write_timeout=timeout)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def aggregate(self) -> str:
        """How artists are scored: as given to :meth:`open`, else the bound encoder's, else ``max``."""
        if self._aggregate is not None:
            return self._aggregate
        identity = self.encoder_identity() or {}
        return identity.get("aggregate") or DEFAULT_AGGREGATE

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------- artists

    def add_artist(self, name: str, *, consent: str = "") -> Artist:
        """Create an artist with no works; :class:`RegistryError` if the name is invalid (see
        :func:`normalise_name`) or taken (see :func:`name_key`)."""
        name = normalise_name(name)
        with self._lock, self._transaction():
            self._insert_artist(name, consent)
        return self.get_artist(name)

    def get_artist(self, name: str) -> Artist:
        """The artist called ``name`` (its stored name, else any name with the same
        :func:`name_key`); :class:`RegistryError` if there is none."""
        with self._lock:
            artist_id, _ = self._find(name)
            row = self._execute(
                "SELECT a.name, a.consent, a.created_at, COUNT(w.id) FROM artists a "
                "LEFT JOIN works w ON w.artist_id = a.id WHERE a.id = ? GROUP BY a.id", (artist_id,)).fetchone()
        if row is None:
            raise _not_found(name)
        return Artist(*row)

    def list_artists(self) -> list[Artist]:
        """Every artist, by name, with the number of works enrolled."""
        with self._lock:
            rows = self._execute(
                "SELECT a.name, a.consent, a.created_at, COUNT(w.id) FROM artists a "
                "LEFT JOIN works w ON w.artist_id = a.id GROUP BY a.id ORDER BY a.name").fetchall()
        return [Artist(*r) for r in rows]

    def remove_artist(self, name: str) -> int:
        """Delete an artist and all their works (thumbnails and originals included); returns the
        number of works deleted. :class:`RegistryError` if there is no such artist. On SQLite the
        deleted bytes are overwritten and the WAL emptied (see the SQLite dialect)."""
        with self._lock:
            with self._transaction():
                artist_id, _ = self._find(name)
                n = self._execute("SELECT COUNT(*) FROM works WHERE artist_id = ?", (artist_id,)).fetchone()[0]
                self._execute("DELETE FROM artists WHERE id = ?", (artist_id,))
            self._reconnecting(lambda: self._dialect.after_delete(self._conn))
        return int(n)

    # ------------------------------------------------------------------------- works

    def enrol(self, artist: str, sources: Iterable, encoder, *, consent: str | None = None,
              create: bool = True, keep_originals: bool = False, batch_size: int = 32,
              progress: Callable[[str, int, int], None] | None = None,
              labels: Sequence[str] | None = None) -> EnrolReport:
        """Embed ``sources`` (paths, bytes, PIL images...) with ``encoder`` (a
        :class:`~detector.style.StyleEncoder`) and add them to ``artist`` in one transaction.

        The artist is found as :meth:`get_artist` finds one; when missing and ``create`` is true,
        it is created (with ``consent``, its name checked by :func:`normalise_name`) in the same
        transaction. A source that cannot be decoded, whose bytes are already enrolled for this
        artist (``duplicate``) or for another (``enrolled_elsewhere``), is skipped and reported, never
        fatal. ``progress(stage, done, total)`` is called with stage ``"embed"`` as works are
        embedded and ``"write"`` as rows are inserted. ``labels`` names the sources in the database
        and the report (default: the path, or ``<bytes #i>``), for example the file names of an
        upload. ``report.artist`` is the artist's name as stored. A new artist none of whose works can
        be added (all skipped) is not created: ``report.created`` stays false and nothing is stored."""
        try:
            name = self.get_artist(artist).name  # fail before the slow part; checked again in the transaction
        except RegistryError as exc:
            if not create or exc.code != "artist_not_found":
                raise
            name = normalise_name(artist)
        sources = list(sources)
        if labels is not None and len(labels) != len(sources):
            raise ValueError(f"{len(labels)} labels for {len(sources)} sources")
        report = EnrolReport(artist=name)
        prepared = []
        seen: set[str] = set()
        for start in range(0, len(sources), batch_size):
            chunk = sources[start:start + batch_size]
            # Images come back thumbnail-sized: a chunk holds one full-size decode at a time.
            for offset, (src, result) in enumerate(zip(chunk, encoder.embed_with_images(
                    chunk, shrink=copies.shrink_in_place, full_size=copies.signature))):
                label = labels[start + offset] if labels is not None else _source_label(src, start + offset)
                if isinstance(result, Exception):
                    report.skipped.append((label, getattr(result, "code", "error"), str(result)))
                    continue
                emb, image, raw, sig = result
                digest = hashlib.sha256(raw).hexdigest()
                if digest in seen:
                    report.skipped.append((label, "duplicate", "the same bytes appear twice in this enrolment"))
                    continue
                seen.add(digest)
                prepared.append((label, digest, emb, make_thumbnail(image), raw if keep_originals else None, sig))
            if progress:
                progress("embed", min(start + batch_size, len(sources)), len(sources))
        identity = encoder.identity()
        now = _now()
        with self._lock, self._transaction():
            self._bind_encoder(identity)
            found = self._find(name, missing_ok=True)
            enrolled = self._enrolled([p[1] for p in prepared])
            if found is None:
                if not create:
                    raise _not_found(name)
                name = normalise_name(name)  # a stored name found before may have gone meanwhile
                if all(p[1] in enrolled for p in prepared):
                    artist_id = None  # nothing of theirs to add: an artist is not created without works
                else:
                    artist_id = self._insert_artist(name, consent or "")
                    report.created = True
            else:
                artist_id, name = found
                if consent:
                    self._execute("UPDATE artists SET consent = ? WHERE id = ?", (consent, artist_id))
            report.artist = name
            for i, (label, digest, emb, thumb, original, sig) in enumerate(prepared):
                owner = enrolled.get(digest)
                if owner == artist_id:
                    report.skipped.append((label, "duplicate", f"already enrolled for {name}"))
                elif owner is not None:  # whose it is stays unsaid: the caller may not be one to know
                    report.skipped.append((label, "enrolled_elsewhere", "this file is already enrolled under "
                                                                        "another artist; a work belongs to one"))
                else:
                    enrolled[digest] = artist_id
                    self._execute(
                        "INSERT INTO works (artist_id, sha256, embedding, thumbnail, created_at, source, original, "
                        "copy_hash, copy_thumb, copy_aspect) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (artist_id, digest, np.asarray(emb, "<f4").tobytes(), thumb, now, label, original,
                         sig.hash_bytes, sig.thumb, sig.aspect))
                    report.added += 1
                if progress:
                    progress("write", i + 1, len(prepared))
        return report

    def reembed(self, encoder, *, batch_size: int = 32,
                progress: Callable[[str, int, int], None] | None = None) -> ReembedReport:
        """Embed every enrolled work again with ``encoder`` and bind the registry to it: how a registry
        follows a new style encoder without anyone enrolling again.

        Each work is embedded from its original file when it was kept (``keep_originals``), else from
        its stored thumbnail (WebP, at most ``THUMBNAIL_SIDE`` px): an approximation, close for an
        encoder that looks at the image at 64 px (the bundled one) and the further off the more detail
        an encoder reads. The report counts both. All or nothing: if any work cannot be embedded
        (``reembed_failed``, those works named), nothing changes, since old and new embeddings cannot
        be compared. ``progress(stage, done, total)``: ``"embed"``, then ``"write"``."""
        with self._lock:
            ids = [int(r[0]) for r in self._execute("SELECT id FROM works ORDER BY id").fetchall()]
        report = ReembedReport(works=len(ids), encoder=f"{encoder.name} {encoder.version}")
        embeddings: list[np.ndarray] = []
        failed: list[tuple[int, str, str]] = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            marks = ",".join("?" * len(chunk))
            with self._lock:  # one chunk of originals in memory at a time
                rows = self._execute(f"SELECT id, source, original, thumbnail FROM works WHERE id IN ({marks}) "
                                     "ORDER BY id", chunk).fetchall()
            if [int(r[0]) for r in rows] != chunk:
                raise RegistryError("works were removed while re-embedding; nothing was changed, run it again",
                                    code="reembed_failed")
            stored = [bytes(r[2]) if r[2] is not None else bytes(r[3]) for r in rows]
            report.from_originals += sum(r[2] is not None for r in rows)
            for (wid, source, *_), result in zip(rows, encoder.embed(stored, batch_size=batch_size)):
                if isinstance(result, Exception):
                    failed.append((int(wid), source, str(result)))
                else:
                    embeddings.append(np.asarray(result, "<f4"))
            if progress:
                progress("embed", min(start + batch_size, len(ids)), len(ids))
        report.from_thumbnails = len(ids) - report.from_originals
        if failed:
            shown = "; ".join(f"work {w} ({src}): {msg}" for w, src, msg in failed[:5])
            raise RegistryError(f"{len(failed)} of {len(ids)} works could not be embedded again, nothing was "
                                f"changed: {shown}", code="reembed_failed")
        identity = encoder.identity()
        with self._lock, self._transaction():
            now = [int(r[0]) for r in self._execute("SELECT id FROM works ORDER BY id").fetchall()]
            if now != ids:
                raise RegistryError("works were enrolled or removed while re-embedding; nothing was changed, "
                                    "run it again", code="reembed_failed")
            for i, (wid, emb) in enumerate(zip(ids, embeddings)):
                self._execute("UPDATE works SET embedding = ? WHERE id = ?", (emb.tobytes(), wid))
                if progress:
                    progress("write", i + 1, len(ids))
            self._execute("DELETE FROM settings WHERE key = 'encoder'")
            self._execute("INSERT INTO settings (key, value) VALUES ('encoder', ?)", (json.dumps(identity),))
        return report

    def works(self, artist: str) -> list[dict]:
        """The works of ``artist``: id, source, sha256, created time, thumbnail bytes, and whether
        the original is kept."""
        with self._lock:
            artist_id, _ = self._find(artist)
            rows = self._execute(
                "SELECT id, source, sha256, created_at, thumbnail, original IS NOT NULL "
                "FROM works WHERE artist_id = ? ORDER BY id", (artist_id,)).fetchall()
        return [{"id": r[0], "source": r[1], "sha256": r[2], "created_at": r[3], "thumbnail": r[4],
                 "original_kept": bool(r[5])} for r in rows]

    def original(self, work_id: int) -> bytes | None:
        """The original bytes of a work if they were kept, else None."""
        with self._lock:
            row = self._execute("SELECT original FROM works WHERE id = ?", (work_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no work with id {work_id}")
        return row[0]

    def encoder_identity(self) -> dict | None:
        """The encoder the stored embeddings were made with (set by the first enrolment)."""
        with self._lock:
            row = self._execute("SELECT value FROM settings WHERE key = 'encoder'").fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------------------- matching

    def match(self, embedding: np.ndarray, k: int = 3, *, threshold: float | None = None,
              works_per_artist: int = 3) -> list[ArtistMatch]:
        """The ``k`` artists most similar to one embedding, most similar first, each with its
        nearest enrolled works. Empty when nobody is enrolled."""
        return self.match_batch(np.asarray(embedding)[None, :], k, threshold=threshold,
                                works_per_artist=works_per_artist)[0]

    def match_batch(self, embeddings: np.ndarray, k: int = 3, *, threshold: float | None = None,
                    works_per_artist: int = 3) -> list[list[ArtistMatch]]:
        """:meth:`match` for a batch ``(Q, D)`` of embeddings."""
        index = self._current_index()
        q = self._check_queries(embeddings, index)
        if index is None or not len(q):
            return [[] for _ in range(len(q))]
        scores, sims = self._score_all(index, q)
        picks = [[(int(j), float(scores[i, j]),
                   self._nearest(index, q[i], int(j), works_per_artist, None if sims is None else sims[i]))
                  for j in top_k_indices(scores[i], k)] for i in range(len(q))]
        details = self._work_details(index.work_ids[[r for p in picks for _, _, near in p for r, _ in near]])
        return [[self._artist_match(index, j, score, near, details, threshold) for j, score, near in p]
                for p in picks]

    def similarity_to(self, embedding: np.ndarray, artist: str, *, threshold: float | None = None,
                      works_per_artist: int = 3) -> ArtistMatch:
        """The similarity of one embedding to one named artist; :class:`RegistryError` if the artist
        is unknown or has no works."""
        index = self._current_index()
        q = self._check_queries(np.asarray(embedding)[None, :], index)
        artist = self.get_artist(artist).name  # raises for an unknown artist
        if index is None or artist not in index.artists:
            raise RegistryError(f"artist {artist!r} has no enrolled works")
        j = index.artists.index(artist)
        if index.aggregate == "centroid":
            score, near = float(index.centroids[j] @ q[0]), self._nearest(index, q[0], j, works_per_artist)
        else:
            s, e = index.segment(j)
            seg = similarities(index.matrix[s:e], q[0])[None, :]
            score = float(artist_scores(seg, np.zeros(1, np.int64), index.aggregate)[0, 0])
            near = self._nearest(index, q[0], j, works_per_artist, None)
        details = self._work_details(index.work_ids[[r for r, _ in near]])
        return self._artist_match(index, j, score, near, details, threshold)

    def copy_signature(self, image: Image.Image, sha256: str | None = None) -> copies.Signature:
        """The copy signature of a query image for :meth:`find_copy`: the grey one
        (:func:`mimicry.detector.copies.signature`), and its colour view too when at least two enrolled
        works are near it by hash, the case where stage 3 may have works to choose between. The
        colour view costs a resize of the whole image and a WebP encoding (tens of ms for a large
        PNG, BENCHMARKS.md), so a query near no enrolled work does not pay for it. ``sha256``, of the
        query's file (:func:`~mimicry.detector.copies.source_sha256`), lets an enrolled file be found as
        itself."""
        signature = dataclasses.replace(copies.signature(image), sha256=sha256)
        index = self._current_index()
        if index is None or not signature.detailed:
            return signature
        near = np.count_nonzero(index.has_signature
                                & (copies.hamming(index.copy_hashes, signature.dhash) <= copies.CANDIDATE_BITS))
        return copies.with_colour(signature, image) if near >= 2 else signature

    def find_copy(self, signature: copies.Signature, embedding: np.ndarray | None = None) -> CopyMatch | None:
        """The enrolled work that the image of ``signature`` (:func:`mimicry.detector.copies.signature`)
        is a copy of (the same picture, re-encoded, resized), or None; whatever its style similarity
        and with no threshold on it. ``embedding``, the image's style embedding, adds the works
        nearest in style to the hash's candidates. :mod:`mimicry.detector.copies` says how it
        decides; the rates it reaches are in BENCHMARKS.md. Works that have no signature (see
        migration 4: none could be made from what was stored) are never found."""
        index = self._current_index()
        if index is None:
            return None
        if signature.sha256 is not None:
            same = self._same_file(signature.sha256)
            if same is not None:
                return same
        if not signature.detailed:
            return None
        bits = np.where(index.has_signature, copies.hamming(index.copy_hashes, signature.dhash), 65)
        near = np.flatnonzero(bits <= copies.CANDIDATE_BITS)
        if len(near) > copies.MAX_CANDIDATES:
            near = near[np.argpartition(bits[near], copies.MAX_CANDIDATES - 1)[:copies.MAX_CANDIDATES]]
        rows = set(near.tolist())
        if embedding is not None:
            q = self._check_queries(np.asarray(embedding)[None, :], index)[0]
            sims = np.where(index.has_signature, similarities(index.matrix, q), -np.inf)
            rows.update(int(r) for r in top_k_indices(sims, copies.STYLE_CANDIDATES) if np.isfinite(sims[r]))
        if not rows:
            return None
        bits_of = {int(index.work_ids[r]): int(bits[r]) for r in rows}
        passed = []
        for wid, source, digest, thumb, aspect, artist, shown in self._copy_candidates(sorted(bits_of)):
            if len(thumb) != len(signature.thumb) or not copies.aspect_close(signature.aspect, aspect):
                continue
            d = copies.query_distance(signature, bytes(thumb))
            if d <= copies.COPY_DISTANCE:
                passed.append((CopyMatch(wid, source, digest, artist, d, bits_of[wid]),
                               None if shown is None else bytes(shown)))
        if not passed:
            return None
        return passed[copies.pick(signature, [(m.distance, shown) for m, shown in passed])][0]

    def work_count(self) -> int:
        with self._lock:
            return int(self._execute("SELECT COUNT(*) FROM works").fetchone()[0])

    def has_works(self) -> bool:
        """Whether anyone's works are enrolled, from the in-memory index (one cheap version check,
        not a count): what a caller asks before spending an embedding on a query."""
        index = self._current_index()
        return index is not None and len(index.work_ids) > 0

    # ------------------------------------------------------------------------- internals

    def _execute(self, sql: str, params: Sequence = ()):
        """Run one statement written with ``?`` placeholders; returns the cursor."""
        sql = self._dialect.sql(sql)
        return self._reconnecting(lambda: self._conn.execute(sql, params))

    def _reconnecting(self, step: Callable[[], Any]) -> Any:
        """``step()``; if it finds the connection lost (a database server restarted, a replica's
        connection dropped) outside a transaction, once more on a new connection. Inside a
        transaction the error stands: the server has rolled the transaction back."""
        try:
            return step()
        except self._dialect.lost_errors:
            if self._in_transaction or self._reconnect is None or not self._dialect.is_lost(self._conn):
                raise
        self._conn = self._reconnect()
        return step()

    def _transaction(self):
        return _Transaction(self)

    @contextlib.contextmanager
    def _transaction_flag(self):
        self._in_transaction = True
        try:
            yield
        finally:
            self._in_transaction = False

    def _find(self, name: str, *, missing_ok: bool = False) -> tuple[int, str] | None:
        """``(id, stored name)`` of the artist called ``name``: by the exact stored name first (an
        artist stored before names were normalised may share its key with an older one), else by
        :func:`name_key`. :class:`RegistryError` when there is none, unless ``missing_ok``."""
        if isinstance(name, str):
            for sql, value in (("SELECT id, name FROM artists WHERE name = ?", name),
                               ("SELECT id, name FROM artists WHERE name_key = ?", name_key(name))):
                row = self._execute(sql, (value,)).fetchone()
                if row is not None:
                    return int(row[0]), row[1]
        if missing_ok:
            return None
        raise _not_found(name)

    def _insert_artist(self, name: str, consent: str) -> int:
        """Insert a new artist (``name`` already normalised), in the caller's write transaction."""
        key = name_key(name)
        row = self._execute("SELECT name FROM artists WHERE name_key = ? OR name = ?", (key, name)).fetchone()
        if row is not None:
            raise _taken(name, row[0])
        try:
            row = self._execute("INSERT INTO artists (name, consent, created_at, name_key) VALUES (?, ?, ?, ?) "
                                "RETURNING id", (name, consent, _now(), key)).fetchone()
        except self._dialect.integrity_errors:
            raise _taken(name, name) from None
        return int(row[0])

    def _enrolled(self, digests: Sequence[str]) -> dict[str, int]:
        """``{sha256: artist id}`` of those of ``digests`` already enrolled."""
        out: dict[str, int] = {}
        unique = sorted(set(digests))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update((d, int(a)) for d, a in self._execute(
                f"SELECT sha256, artist_id FROM works WHERE sha256 IN ({marks})", chunk))
        return out

    def check_encoder(self, identity: dict) -> None:
        """Raise :class:`RegistryError` when the stored works were embedded by another encoder than
        ``identity`` (:meth:`StyleEncoder.identity`): their embeddings and its cannot be compared, even
        when they have the same size. A registry without works accepts any encoder."""
        with self._lock:
            bound, has_works = self._binding()
        if bound is not None and has_works:
            _refuse_other_encoder(bound, identity)

    def _binding(self) -> tuple[dict | None, bool]:
        """The encoder the registry is bound to (None before the first enrolment), and whether any work
        holds an embedding of it. The caller holds the lock."""
        row = self._execute("SELECT value FROM settings WHERE key = 'encoder'").fetchone()
        has_works = self._execute("SELECT 1 FROM works LIMIT 1").fetchone() is not None
        return (json.loads(row[0]) if row else None), has_works

    def _bind_encoder(self, identity: dict) -> None:
        bound, has_works = self._binding()
        if bound is None:
            self._execute("INSERT INTO settings (key, value) VALUES ('encoder', ?)", (json.dumps(identity),))
        elif has_works:
            _refuse_other_encoder(bound, identity)
        else:
            self._execute("UPDATE settings SET value = ? WHERE key = 'encoder'", (json.dumps(identity),))

    def _current_index(self) -> _Index | None:
        with self._lock:
            # The version is read before the data, so a change committed in between only costs one
            # more rebuild, never a stale index taken for a current one.
            version = (self._writes, self._reconnecting(lambda: self._dialect.data_version(self._conn)))
            if self._index_version != version:
                with self._dialect.snapshot(self._conn), self._transaction_flag():  # works and artists of one moment
                    self._index = self._load_index()
                self._index_version = version
            return self._index

    def _load_index(self) -> _Index | None:
        # In the works_by_artist index's order: no sort, and no per-row Python objects but the blobs.
        rows = self._execute("SELECT artist_id, id, embedding, copy_hash FROM works ORDER BY artist_id, id").fetchall()
        if not rows:
            return None
        names = dict(self._execute("SELECT id, name FROM artists").fetchall())
        artist_ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        work_ids = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        matrix = np.frombuffer(b"".join([r[2] for r in rows]), dtype="<f4").reshape(len(rows), -1)
        uniq, starts = np.unique(artist_ids, return_index=True)
        sums = np.add.reduceat(matrix, starts, axis=0, dtype=np.float64)
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        has_signature = np.fromiter((r[3] is not None for r in rows), bool, len(rows))
        copy_hashes = np.frombuffer(b"".join([bytes(r[3]) if r[3] is not None else bytes(8) for r in rows]), ">u8")
        return _Index(matrix=np.ascontiguousarray(matrix, dtype=np.float32), work_ids=work_ids,
                      artists=[names[int(a)] for a in uniq], starts=starts.astype(np.int64),
                      centroids=np.ascontiguousarray(centroids, dtype=np.float32), aggregate=self.aggregate,
                      copy_hashes=copy_hashes.astype(np.uint64), has_signature=has_signature)

    def _work_details(self, work_ids: np.ndarray) -> dict[int, tuple[str, str]]:
        """``{work id: (source, sha256)}``; a work deleted since the index was built is left out."""
        ids = sorted({int(w) for w in work_ids})
        out: dict[int, tuple[str, str]] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for wid, source, digest in self._execute(
                        f"SELECT id, source, sha256 FROM works WHERE id IN ({marks})", chunk):
                    out[wid] = (source, digest)
        return out

    def _same_file(self, sha256: str) -> CopyMatch | None:
        """Stage 0 of :meth:`find_copy`: the earliest enrolled work whose file has these bytes."""
        with self._lock:
            row = self._execute("SELECT w.id, w.source, w.sha256, a.name FROM works w "
                                "JOIN artists a ON a.id = w.artist_id WHERE w.sha256 = ? ORDER BY w.id LIMIT 1",
                                (sha256,)).fetchone()
        return None if row is None else CopyMatch(int(row[0]), row[1], row[2], row[3], 0.0, 0)

    def _copy_candidates(self, work_ids: list[int]) -> list[tuple]:
        """``(id, source, sha256, copy thumbnail, aspect ratio, artist, colour thumbnail)`` of those works
        that have a copy signature; a work deleted since the index was built is left out."""
        out = []
        with self._lock:
            for start in range(0, len(work_ids), 500):
                chunk = work_ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                out += self._execute(
                    "SELECT w.id, w.source, w.sha256, w.copy_thumb, w.copy_aspect, a.name, w.thumbnail FROM works w "
                    f"JOIN artists a ON a.id = w.artist_id WHERE w.copy_thumb IS NOT NULL AND w.id IN ({marks})",
                    chunk).fetchall()
        return out

    def _score_all(self, index: _Index, q: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Artist scores ``(Q, A)``, and the work similarities ``(Q, W)`` when they were needed.
        ``centroid`` compares with one vector per artist only: the works are read for the top-k."""
        if index.aggregate == "centroid":
            if len(q) == 1:
                return similarities(index.centroids, q[0])[None, :], None
            return q @ index.centroids.T, None
        sims = similarities(index.matrix, q[0])[None, :] if len(q) == 1 else q @ index.matrix.T
        return artist_scores(sims, index.starts, index.aggregate), sims

    @staticmethod
    def _check_queries(embeddings: np.ndarray, index: _Index | None) -> np.ndarray:
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim != 2:
            raise ValueError(f"expected embeddings of shape (Q, D), got {q.shape}")
        if index is not None and q.shape[1] != index.dim:
            raise RegistryError(f"embedding of size {q.shape[1]} does not match the registry's {index.dim}: "
                                "was it made by another encoder?")
        return q

    @staticmethod
    def _nearest(index: _Index, query: np.ndarray, j: int, n: int,
                 sims: np.ndarray | None = None) -> list[tuple[int, float]]:
        """``(row, similarity)`` of artist ``j``'s ``n`` works nearest to the query, nearest first;
        from ``sims`` (all works) when given, else computed for the artist's rows only."""
        s, e = index.segment(j)
        seg = sims[s:e] if sims is not None else index.matrix[s:e] @ query
        return [(s + int(t), float(seg[t])) for t in top_k_indices(seg, n)]

    @staticmethod
    def _artist_match(index: _Index, j: int, score: float, near: list[tuple[int, float]],
                      details: dict[int, tuple[str, str]], threshold: float | None) -> ArtistMatch:
        works = []
        for row, sim in near:
            wid = int(index.work_ids[row])
            if wid in details:
                works.append(WorkMatch(wid, details[wid][0], details[wid][1], sim))
        return ArtistMatch(index.artists[j], score, None if threshold is None else bool(score >= threshold), works)


class _Transaction:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite, the advisory lock on PostgreSQL) ...
    ``COMMIT``, or ``ROLLBACK`` on any exception (the caller holds the lock)."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def __enter__(self):
        reg = self.registry
        # Another connection may hold the database's write lock (another process, another replica): wait
        # for it in short tries, letting go of the registry's lock in between (Condition.wait releases it
        # however deep it is held), so that reads go on meanwhile. Nothing is done yet: safe to retry.
        deadline = time.monotonic() + reg.write_timeout
        while not reg._reconnecting(lambda: reg._dialect.try_begin_write(reg._conn)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise reg._dialect.write_lock_timeout(str(reg.path), reg.write_timeout)
            reg._write_turn.wait(min(0.05, left))
        reg._in_transaction = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        reg = self.registry
        conn, dialect = reg._conn, reg._dialect
        try:
            if exc_type is None:
                try:
                    dialect.mark_written(conn)
                    dialect.commit(conn)
                except BaseException:
                    dialect.rollback(conn)
                    raise
                reg._writes += 1
            else:
                dialect.rollback(conn)
        finally:
            reg._in_transaction = False
            reg._write_turn.notify_all()


# ----------------------------------------------------------------------------- schema


def schema_version(conn) -> int:
    """The highest migration applied to the database (0 for an empty database); ``conn`` is a
    ``sqlite3`` or ``psycopg`` connection."""
    tables = dialect_of(conn).tables(conn)
    if "schema_version" not in tables:
        if tables:
            raise RegistryError(f"the database holds tables ({', '.join(sorted(tables)[:5])}) "
                                "but no schema_version: it is not a mimicry registry")
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate_to(conn, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations above the database's version up to ``target``, each in its own
    transaction with its ``schema_version`` row. Returns the version reached. Refuses a database
    made by a newer version of this code. Each transaction is a write transaction of the
    database's dialect: one process migrates at a time; the others wait, then see it done."""
    dialect = dialect_of(conn)
    dialect.begin_write(conn)
    try:
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            raise RegistryError(f"the registry has schema version {current}, newer than this version of "
                                f"mimicry-detect understands ({SCHEMA_VERSION}); upgrade mimicry-detect")
        if current == 0:  # the table may be there, empty: made by a process that has not migrated yet
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                         "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
        dialect.commit(conn)
    except BaseException:
        dialect.rollback(conn)
        raise
    for version, description, sql in MIGRATIONS:
        if version <= current or version > target:
            continue
        dialect.begin_write(conn)
        try:
            if schema_version(conn) < version:  # another process may have applied it meanwhile
                for statement in _statements(dialect.ddl(sql)):
                    conn.execute(statement)
                if version in _MIGRATION_STEPS:
                    _MIGRATION_STEPS[version](conn, dialect)
                conn.execute(dialect.sql("INSERT INTO schema_version (version, description, applied_at) "
                                         "VALUES (?, ?, ?)"), (version, description, _now()))
            dialect.commit(conn)
        except BaseException:
            dialect.rollback(conn)
            raise
        current = version
    return current


def _statements(sql: str) -> list[str]:
    # executescript() would COMMIT the open transaction first; run the statements one by one instead.
    return [s.strip() for s in sql.split(";") if s.strip()]


# ----------------------------------------------------------------------------- helpers


def _not_found(name) -> RegistryError:
    return RegistryError(f"no artist named {name!r} in the registry", "artist_not_found")


def _taken(name: str, existing: str) -> RegistryError:
    if existing == name:
        return RegistryError(f"an artist named {name!r} is already in the registry", "artist_exists")
    return RegistryError(f"{name!r} is too close to {existing!r}, already in the registry (names are compared "
                         "ignoring case, Unicode form and width, invisible characters and look-alike letters)",
                         "artist_exists")


def _backfill_name_keys(conn, dialect: Dialect) -> None:
    """Migration 3's data step: each artist's :func:`name_key`, oldest first; an artist whose key an
    older one already holds keeps none, and is found by its exact stored name."""
    taken = set()
    for artist_id, name in conn.execute("SELECT id, name FROM artists ORDER BY id").fetchall():
        key = name_key(name)
        if key in taken:
            continue
        taken.add(key)
        conn.execute(dialect.sql("UPDATE artists SET name_key = ? WHERE id = ?"), (key, artist_id))


def _backfill_copy_signatures(conn, dialect: Dialect) -> None:
    """Migration 4's data step: each work's copy signature, from its original when it was kept, else
    from its stored thumbnail (at most 96 px: enough for the 32 px comparison). A work neither of
    which decodes keeps none: it cannot be recognised as copied (:meth:`Registry.find_copy`)."""
    ids = [int(r[0]) for r in conn.execute("SELECT id FROM works ORDER BY id").fetchall()]
    for work_id in ids:  # one row at a time: originals may be large
        original, thumbnail = conn.execute(dialect.sql("SELECT original, thumbnail FROM works WHERE id = ?"),
                                           (work_id,)).fetchone()
        for stored in (original, thumbnail):
            if stored is None:
                continue
            try:
                sig = copies.signature(decode_image(bytes(stored), draft_size=copies.SIDE * 4))
            except (DecodeError, ValueError):
                continue
            conn.execute(dialect.sql("UPDATE works SET copy_hash = ?, copy_thumb = ?, copy_aspect = ? WHERE id = ?"),
                         (sig.hash_bytes, sig.thumb, sig.aspect, work_id))
            break


# Python steps of migrations, run after the version's SQL in the same transaction.
_MIGRATION_STEPS: dict[int, Callable[[Any, Dialect], None]] = {3: _backfill_name_keys, 4: _backfill_copy_signatures}


def _encoder_key(identity: dict) -> tuple:
    return identity.get("name"), identity.get("onnx_sha256"), identity.get("dim")


def _refuse_other_encoder(bound: dict, identity: dict) -> None:
    if _encoder_key(bound) != _encoder_key(identity):
        raise RegistryError(
            f"this registry holds embeddings from encoder {bound.get('name')} {bound.get('version')} "
            f"(sha256 {str(bound.get('onnx_sha256'))[:12]}); they cannot be compared with "
            f"{identity.get('name')} {identity.get('version')} (sha256 {str(identity.get('onnx_sha256'))[:12]}): "
            "use the encoder the registry was built with, or embed its works again with this one "
            "(`mimicry artists reembed`, Registry.reembed)", code="other_encoder")


def _source_label(source, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    return f"<{type(source).__name__} #{index}>"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
