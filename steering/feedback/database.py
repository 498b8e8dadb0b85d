"""The feedback store's SQLite file: opening it safely, one connection per thread, write transactions.

`FeedbackDatabase` is what `FeedbackStore` stands on: it opens (or creates) the file, refuses one that is
not ours before writing anything, upgrades an older schema in place (`schema.migrate`, one transaction),
and gives each thread its own connection (WAL journal, foreign keys on, a busy timeout), so one object can
serve the annotation app's threads and several processes can share the file. Every write runs inside
`transaction()`: `BEGIN IMMEDIATE … COMMIT`, rolled back on any error.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from steering.errors import InputFormatError, InvalidArgument
from steering.feedback.schema import SCHEMA_VERSION, migrate, not_ours, schema_version_of

BUSY_TIMEOUT_MS = 30_000


class FeedbackDatabase:
    """A feedback store's file with per-thread connections and write transactions (see the docstring)."""

    def __init__(self, path: Path) -> None:
        """Use `open`, which creates or checks and upgrades the file."""
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    # ----------------------------------------------------------------- opening, closing, transactions
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Self:
        """Open the store at `path`, creating it when `create` and upgrading an older schema in place.

        Raises:
            InputFormatError: the file is missing (with create=False) or a directory, is not a SQLite file,
                is another program's SQLite file, or was written by a newer version of steering.
        """
        file = Path(path)
        if file.is_dir():
            raise InputFormatError(
                f"the feedback database {path} is a directory", received=str(path), fix="pass a .db file"
            )
        if not file.exists() and not create:
            raise InputFormatError(
                f"the feedback database {path} does not exist",
                received=str(path),
                fix="check the path, or create one with `steer feedback add --db FILE …`",
            )
        store = cls(file)
        try:
            store._upgrade()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close every thread's connection. The store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use); reads go through it, writes through `transaction`."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._lock:
            if self._closed:
                raise InvalidArgument("the feedback store is closed", received=str(self.path))
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._connections.append(connection)
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as error:
            raise not_ours(self.path, f"it is not a SQLite database ({error})") from None
        self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection: BEGIN IMMEDIATE takes the write lock up front
        (no deadlocking upgrades), and any error rolls everything back.

        Inside `batch()` the writes join the batch's transaction instead.
        """
        connection = self.connection()
        if connection.in_transaction:
            yield connection
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write of this thread inside the block one transaction: all of it is stored, or none.

        Used by imports (a crash or a bad row half-way leaves the store as it was) and by `feedback add`.
        Other writers wait (busy timeout) until the block ends, so keep it short of user interaction.
        """
        with self.transaction():
            yield

    def _upgrade(self) -> None:
        """Check the file is ours (or empty), then apply the missing migrations in one transaction.

        The check runs before anything is written (a foreign file is left exactly as it was, journal mode
        included) and again under the write lock, in case another process created the schema meanwhile.
        """
        connection = self.connection()
        try:
            if schema_version_of(connection, self.path) == SCHEMA_VERSION:
                connection.execute("PRAGMA journal_mode = WAL")  # already WAL: no write, no lock
                return
            connection.execute("PRAGMA journal_mode = WAL")
            with self.transaction() as db:
                migrate(db, schema_version_of(db, self.path))
        except sqlite3.DatabaseError as error:
            raise not_ours(self.path, f"SQLite says: {error}") from None

    @property
    def schema_version(self) -> int:
        """The file's `PRAGMA user_version`."""
        return int(self.connection().execute("PRAGMA user_version").fetchone()[0])
