"""API keys: created and revoked from the CLI, stored hashed in SQLite, checked per request.

A key looks like ``mk_<id>_<secret>``. Only the SHA-256 of the whole key is stored (keys are 256-bit
random secrets, so a fast hash is enough: there is nothing to brute-force); the id finds the row and
the digests are compared in constant time. The plain key is shown once, when it is created.
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

PREFIX = "mk_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
)
"""


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyStore:
    """Hashed API keys in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, name: str) -> tuple[str, KeyInfo]:
        """A new key for ``name``: returns the plain key (show it once) and its record."""
        if not name.strip():
            raise ValueError("a key needs a name (who or what uses it)")
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO api_keys (id, name, sha256, created_at) VALUES (?, ?, ?, ?)",
                             (key_id, name.strip(), _digest(key), now))
        return key, KeyInfo(key_id, name.strip(), now, None)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False if there is no active key with that id."""
        with self._lock:
            cur = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                   (time.time(), key_id))
        return cur.rowcount == 1

    def list(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._db.execute("SELECT id, name, created_at, revoked_at FROM api_keys ORDER BY created_at").fetchall()
        return [KeyInfo(*r) for r in rows]

    def verify(self, key: str | None) -> KeyInfo | None:
        """The active key's record if ``key`` is valid, else None."""
        if not key or not key.startswith(PREFIX):
            return None
        key_id, _, secret = key[len(PREFIX):].partition("_")
        if not key_id or not secret:
            return None
        with self._lock:
            row = self._db.execute("SELECT id, name, sha256, created_at, revoked_at FROM api_keys WHERE id = ?",
                                   (key_id,)).fetchone()
        if row is None or row[4] is not None:
            return None
        if not hmac.compare_digest(row[2], _digest(key)):
            return None
        return KeyInfo(row[0], row[1], row[3], row[4])


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
