"""API keys: created and revoked from the CLI, stored hashed in SQLite, checked per request.

A key looks like ``mk_<id>_<secret>``. Only the SHA-256 of the whole key is stored (keys are 256-bit
random secrets, so a fast hash is enough: there is nothing to brute-force); the id finds the row and
the digests are compared in constant time. The plain key is shown once, when it is created.

Each key has one **scope**, and each scope may do what the ones before it may:

- ``detect``: the detect routes (when the service asks for a key there), and artists' names and
  similarities in verdicts. The default for a new key.
- ``enrol``: also the registry: list artists, see one with their works and thumbnails, create
  artists and add works; verdicts then show the nearest works' ids, file names and sha256.
- ``admin``: also remove artists.

Keys made before scopes existed (a key database without the ``scope`` column) are ``admin`` keys:
they keep every right they had. The schema's version is SQLite's ``user_version`` (1: scopes); an
older database is migrated when it is opened. A new database file is created ``0600`` in a folder
made ``0700`` (its ``-wal`` and ``-shm`` take its mode).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from mimicry.detector.locations import private_file
from mimicry.detector.registry_backends import refuse_non_sqlite

PREFIX = "mk_"
SCOPES = ("detect", "enrol", "admin")  # each may do what the ones before it may
DEFAULT_SCOPE = "detect"  # of a new key
LEGACY_SCOPE = "admin"  # of a key made before scopes existed: every right it had
SCHEMA_VERSION = 1
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    scope      TEXT NOT NULL DEFAULT '{LEGACY_SCOPE}'
)
"""


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    created_at: float
    revoked_at: float | None
    scope: str = LEGACY_SCOPE

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether this key may do what ``scope`` may (a higher scope includes the lower ones)."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope) if self.scope in SCOPES else False


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; a key's scope is one of {', '.join(SCOPES)}")
    return scope


class KeyStore:
    """Hashed API keys in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | os.PathLike):
        refuse_non_sqlite(path)  # SQLite would write over a small file of other bytes
        self.path = private_file(Path(path))  # 0600 in a 0700 folder when new
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _migrate(self) -> None:
        """Create the table, or bring an older one to :data:`SCHEMA_VERSION` (one transaction)."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(api_keys)")}
            if "scope" not in columns:  # made before scopes: its keys keep every right they had
                self._db.execute(f"ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT '{LEGACY_SCOPE}'")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def create(self, name: str, scope: str = DEFAULT_SCOPE) -> tuple[str, KeyInfo]:
        """A new key for ``name`` with ``scope`` (one of :data:`SCOPES`): returns the plain key (show
        it once) and its record."""
        if not name.strip():
            raise ValueError("a key needs a name (who or what uses it)")
        check_scope(scope)
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO api_keys (id, name, sha256, created_at, scope) VALUES (?, ?, ?, ?, ?)",
                             (key_id, name.strip(), _digest(key), now, scope))
        return key, KeyInfo(key_id, name.strip(), now, None, scope)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False if there is no active key with that id."""
        with self._lock:
            cur = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                   (time.time(), key_id))
        return cur.rowcount == 1

    def list(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._db.execute("SELECT id, name, created_at, revoked_at, scope FROM api_keys "
                                    "ORDER BY created_at").fetchall()
        return [KeyInfo(*r) for r in rows]

    def verify(self, key: str | None) -> KeyInfo | None:
        """The active key's record if ``key`` is valid, else None."""
        if not key or not key.startswith(PREFIX):
            return None
        key_id, _, secret = key[len(PREFIX):].partition("_")
        if not key_id or not secret:
            return None
        with self._lock:
            row = self._db.execute("SELECT id, name, sha256, created_at, revoked_at, scope FROM api_keys "
                                   "WHERE id = ?", (key_id,)).fetchone()
        if row is None or row[4] is not None:
            return None
        if not hmac.compare_digest(row[2], _digest(key)):
            return None
        return KeyInfo(row[0], row[1], row[3], row[4], row[5])


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
