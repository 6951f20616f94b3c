"""What differs between the registry's databases: SQLite (one file, the default) and PostgreSQL
(one server shared by several replicas of the service).

:class:`~detector.registry.Registry` writes its SQL once, with ``?`` placeholders and the type
tokens ``{pk}``, ``{int}`` and ``{blob}`` in its migrations; a :class:`Dialect` turns that into its
database's SQL, opens connections, runs write transactions one at a time, says when another
connection has changed the data (so the in-memory embedding index is rebuilt), and when the server
has dropped a connection.

``psycopg`` (the ``postgres`` extra) is imported only when a PostgreSQL registry is opened.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mimicry.detector.locations import private_file

URL_SCHEMES = ("postgresql://", "postgres://")
# The key of the advisory lock that serialises the registry's write transactions (and migrations)
# across all the replicas that share one PostgreSQL database: b"mimicryr" as a signed 64-bit integer.
ADVISORY_LOCK_KEY = int.from_bytes(b"mimicryr", "big", signed=True)
CHECKPOINT_WAIT_MS = 5000  # the longest a removal waits to empty SQLite's WAL


SQLITE_MIN_FILE = 512  # the smallest database SQLite writes: one page of the smallest page size


def refuse_non_sqlite(path: str | os.PathLike) -> None:
    """Raise ``sqlite3.DatabaseError`` when ``path`` is a file too small to be a SQLite database (1 to 511 bytes):
    SQLite takes such a file for an empty database and writes over it, so a mistyped path would cost the user a
    small file; a larger file of other bytes SQLite refuses itself ("file is not a database"). Judged by
    ``stat`` alone, never by opening the file: closing any descriptor of a file drops every POSIX lock this
    process holds on it, SQLite's own included (a connection already open here would lose its locks, and a
    WAL database its committed writes)."""
    try:
        size = os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return
    if 0 < size < SQLITE_MIN_FILE:
        raise sqlite3.DatabaseError(f"{path} is not a SQLite database (file is not a database: {size} bytes)")


def is_url(location: Any) -> bool:
    """Whether ``location`` names a PostgreSQL database (a ``postgresql://`` URL) rather than a file."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Dialect:
    """One database's SQL and connection rules. Subclasses fill in the class attributes."""

    name: str
    types: dict[str, str]  # the migrations' type tokens
    database_errors: tuple[type[Exception], ...]
    integrity_errors: tuple[type[Exception], ...]
    lost_errors: tuple[type[Exception], ...] = ()  # what a statement raises when the connection is gone

    def sql(self, text: str) -> str:
        """A statement written with ``?`` placeholders, in this database's form."""
        return text

    def ddl(self, text: str) -> str:
        """A migration's SQL with its type tokens filled in."""
        return text.format(**self.types)

    def begin_write(self, conn) -> None:
        """Open a transaction that writes, once no other connection is writing."""
        raise NotImplementedError

    def try_begin_write(self, conn) -> bool:
        """Open a write transaction if no other connection is writing now, without waiting: True if it
        is open, False if another writer holds the lock (nothing is left open then)."""
        raise NotImplementedError

    def write_lock_timeout(self, where: str, seconds: float) -> Exception:
        """The error for a write that waited ``seconds`` for another writer: this database's own
        "locked" error type, so that callers handle it as they handle the database's."""
        raise NotImplementedError

    def begin_snapshot(self, conn) -> None:
        """Open a read-only transaction: every statement in it sees the same committed state."""
        conn.execute("BEGIN")

    def commit(self, conn) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn) -> None:
        conn.execute("ROLLBACK")

    def mark_written(self, conn) -> None:
        """Called in every write transaction before it commits (see :meth:`data_version`)."""

    def is_lost(self, conn) -> bool:
        """Whether the server has dropped ``conn`` (after one of :attr:`lost_errors`)."""
        return False

    def data_version(self, conn) -> int:
        """A number that changes when another connection commits a change to the registry."""
        raise NotImplementedError

    def after_delete(self, conn) -> None:
        """Called after a transaction that deleted rows has committed: what the database needs so
        that the deleted bytes are gone from its files, where it can."""

    def tables(self, conn) -> list[str]:
        """The names of the tables in the registry's database (or schema)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def snapshot(self, conn) -> Iterator[None]:
        """``with`` block around :meth:`begin_snapshot` ... ``COMMIT`` (``ROLLBACK`` on an exception)."""
        self.begin_snapshot(conn)
        try:
            yield
        except BaseException:
            self.rollback(conn)
            raise
        self.commit(conn)


class SQLiteDialect(Dialect):
    """An embedded SQLite file in WAL mode: writers take the file's write lock with ``BEGIN
    IMMEDIATE``; ``PRAGMA data_version`` tells of other connections' commits.

    The file is created ``0600`` in a ``0700`` folder when it is new (its ``-wal`` and ``-shm`` take its
    mode). Deleted rows leave no bytes behind: ``secure_delete`` overwrites them (in the page and on
    freed pages) as they are deleted, and a ``TRUNCATE`` checkpoint after each delete copies the
    overwritten pages into the database and empties the WAL, which still held the rows' earlier
    images. A checkpoint that another connection's open read holds back truncates nothing; the
    next one after a delete does."""

    name = "sqlite"
    types = {"pk": "INTEGER PRIMARY KEY", "int": "INTEGER", "blob": "BLOB"}
    database_errors = (sqlite3.DatabaseError,)
    integrity_errors = (sqlite3.IntegrityError,)

    def connect(self, path: Path, timeout: float) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit), usable from any thread."""
        refuse_non_sqlite(path)
        private_file(path)
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a killed process loses nothing committed; a power cut may lose the last
            # commits but never leaves the file inconsistent.
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def begin_write(self, conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def try_begin_write(self, conn) -> bool:
        busy = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {busy}")

    def write_lock_timeout(self, where: str, seconds: float) -> Exception:
        return sqlite3.OperationalError(f"database is locked: {where} waited {seconds:g} s for another writer")

    def data_version(self, conn) -> int:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def after_delete(self, conn) -> None:
        # Best effort, and bounded: a checkpoint waits for other connections' reads of older snapshots
        # (the index of another process being loaded), here 5 s at most, not the connection's timeout.
        busy = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute(f"PRAGMA busy_timeout = {min(busy, CHECKPOINT_WAIT_MS)}")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:  # locked past the wait: the next removal's checkpoint does it
            pass
        finally:
            conn.execute(f"PRAGMA busy_timeout = {busy}")

    def tables(self, conn) -> list[str]:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


class PostgresDialect(Dialect):
    """A PostgreSQL database shared by several processes or hosts.

    Write transactions (and migrations) take one transaction-scoped advisory lock first, so they
    run one at a time as SQLite's do: two replicas creating the same artist, or binding the encoder
    of an empty registry, at the same moment cannot both pass their checks. Every write
    transaction bumps a counter (the ``data_version`` row of ``settings``), which is what
    :meth:`data_version` reads: one indexed ``SELECT``."""

    name = "postgresql"
    types = {"pk": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "int": "BIGINT", "blob": "BYTEA"}

    def __init__(self) -> None:
        try:
            import psycopg
        except ImportError:
            raise ImportError("a PostgreSQL registry needs psycopg: pip install 'mimicry-detect[postgres]'") from None
        self._psycopg = psycopg
        self.database_errors = (psycopg.DatabaseError,)
        self.integrity_errors = (psycopg.IntegrityError,)
        self.lost_errors = (psycopg.OperationalError,)

    def connect(self, url: str, timeout: float):
        """A connection in autocommit mode (transactions are explicit); waits for locks at most
        ``timeout`` seconds."""
        conn = self._psycopg.connect(url, autocommit=True, connect_timeout=max(1, round(timeout)))
        try:
            conn.execute(f"SET lock_timeout = {int(timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def begin_write(self, conn) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))

    def try_begin_write(self, conn) -> bool:
        conn.execute("BEGIN")
        if conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0]:
            return True
        conn.execute("ROLLBACK")
        return False

    def write_lock_timeout(self, where: str, seconds: float) -> Exception:
        return self._psycopg.errors.LockNotAvailable(f"{where} waited {seconds:g} s for another writer")

    def begin_snapshot(self, conn) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def rollback(self, conn) -> None:
        if not conn.closed:  # a lost connection has nothing to roll back: the server did it
            conn.execute("ROLLBACK")

    def is_lost(self, conn) -> bool:
        return bool(conn.broken)

    def mark_written(self, conn) -> None:
        conn.execute("INSERT INTO settings (key, value) VALUES ('data_version', '1') ON CONFLICT (key) "
                     "DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)")

    def data_version(self, conn) -> int:
        row = conn.execute("SELECT value FROM settings WHERE key = 'data_version'").fetchone()
        return int(row[0]) if row else 0

    def tables(self, conn) -> list[str]:
        return [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE'")]


SQLITE = SQLiteDialect()
_postgres: PostgresDialect | None = None


def postgres() -> PostgresDialect:
    """The PostgreSQL dialect (imports psycopg on first use)."""
    global _postgres
    if _postgres is None:
        _postgres = PostgresDialect()
    return _postgres


def dialect_of(conn) -> Dialect:
    """The dialect of an open connection: SQLite for ``sqlite3`` connections, else PostgreSQL."""
    return SQLITE if isinstance(conn, sqlite3.Connection) else postgres()
