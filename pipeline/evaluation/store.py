"""The SQLite store of scheduled evaluations.

:class:`ResultStore` is what scheduled evaluation (``trimbert evaluate
--pending`` / ``trimbert watch``) writes in. Each (checkpoint, task) pair has
one row, changed only inside ``BEGIN IMMEDIATE`` transactions, so any number
of watcher processes can share the file:

* ``claim_pending`` takes pairs with no row, a failed row, or a running row
  whose lease has expired (its watcher crashed or stalled), and marks them
  running under a fresh claim token and lease;
* while it evaluates, the owner extends the lease (``heartbeat`` or
  ``keep_alive``);
* ``complete`` stores the record and the row is never claimed again;
  ``fail`` stores the error and the pair is retried on a later pass.
  Both succeed only for the current claim token: a watcher that lost its
  lease cannot overwrite the result of the one that took over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

from configs.errors import TrimbertError
from pipeline.evaluation.record import ResultRecord

CONNECT_TIMEOUT_SECONDS = 60.0  # how long a connection waits on another writer
_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    checkpoint    TEXT NOT NULL,
    task          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    owner         TEXT,
    token         TEXT,
    lease_expires REAL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    result        TEXT,
    claimed_at    REAL,
    finished_at   REAL,
    PRIMARY KEY (checkpoint, task)
)
"""


@dataclasses.dataclass(frozen=True)
class Claim:
    """The right to evaluate one pair, held until the lease expires.

    Args:
        checkpoint: the checkpoint to evaluate.
        task: the task to fine-tune it on.
        owner: who claimed it (e.g. ``hostname:pid``).
        token: unique per claim; ``complete`` and ``fail`` need the current one.
        attempt: 1 for the first try, more after failures or expired leases.
    """

    checkpoint: str
    task: str
    owner: str
    token: str
    attempt: int


@dataclasses.dataclass(frozen=True)
class EvaluationRow:
    """One pair's state in the store, as ``trimbert evaluate`` lists it."""

    checkpoint: str
    task: str
    status: str
    owner: str | None
    attempts: int
    error: str | None
    lease_expires: float | None
    finished_at: float | None


class ResultStore:
    """SQLite store of scheduled evaluations; safe to share between processes.

    Args:
        path: the database file (created with its folder if missing). Use a
            local disk: SQLite's locking is unreliable on network file systems.
        lease_seconds: how long a claim stays valid without a heartbeat.
    """

    def __init__(self, path: pathlib.Path, lease_seconds: float = 900.0):
        if "://" in str(path):  # SQLite opens files through the OS: an object store has no locks
            raise TrimbertError(f"evaluation store {path}: the SQLite store needs a local disk, not a URL; "
                                "pass --store /local/path/evaluations.sqlite")
        self.path = pathlib.Path(path)
        self.lease_seconds = lease_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = self._connect()
        with self._transaction() as connection:
            connection.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves; timeout waits on other writers.
        connection = sqlite3.connect(self.path, timeout=CONNECT_TIMEOUT_SECONDS, isolation_level=None)
        # WAL: readers never block the writer. Switching to it needs the database to itself for a moment,
        # and SQLite may answer "database is locked" at once instead of waiting (two watchers that start
        # together, one still creating the file): retry for as long as the busy timeout would wait.
        deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return connection
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def _transaction(self, connection: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database's write lock at its start."""
        connection = connection or self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def claim_pending(self, checkpoints: Sequence[str], tasks: Sequence[str], owner: str,
                      limit: int | None = None, pass_started: float | None = None) -> list[Claim]:
        """Claims pairs that still need an evaluation, in checkpoint-then-task order.

        Args:
            checkpoints: checkpoint paths (use one spelling, e.g. resolved absolute paths).
            tasks: task names.
            owner: who claims (recorded for ``trimbert evaluate`` listings).
            limit: claim at most this many; ``1`` lets watchers share the work.
            pass_started: ``time.time()`` when the current pass began; pairs that
                failed after it are left for the next pass (so a pass ends).
        """
        now = time.time()
        claims: list[Claim] = []
        with self._transaction() as connection:
            states = {(row[0], row[1]): row[2:] for row in connection.execute(
                "SELECT checkpoint, task, status, lease_expires, finished_at, attempts FROM evaluations")}
            for checkpoint in checkpoints:
                for task in tasks:
                    if limit is not None and len(claims) >= limit:
                        return claims
                    state = states.get((str(checkpoint), task))
                    if state is not None and not _claimable(*state[:3], now=now, pass_started=pass_started):
                        continue
                    claim = Claim(str(checkpoint), task, owner, uuid.uuid4().hex,
                                  attempt=1 if state is None else state[3] + 1)
                    connection.execute(
                        "INSERT INTO evaluations (checkpoint, task, status, owner, token, lease_expires, "
                        "attempts, claimed_at) VALUES (?, ?, 'running', ?, ?, ?, ?, ?) "
                        "ON CONFLICT (checkpoint, task) DO UPDATE SET status = 'running', "
                        "owner = excluded.owner, token = excluded.token, "
                        "lease_expires = excluded.lease_expires, attempts = excluded.attempts, "
                        "claimed_at = excluded.claimed_at",
                        (claim.checkpoint, task, owner, claim.token, now + self.lease_seconds,
                         claim.attempt, now))
                    claims.append(claim)
        return claims

    def heartbeat(self, claim: Claim) -> bool:
        """Extends the claim's lease; ``False`` if it was lost (expired and claimed again)."""
        return self._heartbeat(self._connection, claim)

    def _heartbeat(self, connection: sqlite3.Connection, claim: Claim) -> bool:
        with self._transaction(connection):
            cursor = connection.execute(
                "UPDATE evaluations SET lease_expires = ? WHERE checkpoint = ? AND task = ? "
                "AND token = ? AND status = 'running'",
                (time.time() + self.lease_seconds, claim.checkpoint, claim.task, claim.token))
        return cursor.rowcount == 1

    @contextlib.contextmanager
    def keep_alive(self, claim: Claim, interval: float | None = None) -> Iterator[threading.Event]:
        """Heartbeats from a background thread while the enclosed evaluation runs.

        Args:
            claim: the claim to keep.
            interval: seconds between heartbeats; default a third of the lease.

        Yields:
            An event that is set if the lease was lost; the evaluation may stop early.
        """
        lost, stop = threading.Event(), threading.Event()

        def beat() -> None:
            connection = self._connect()  # SQLite connections stay in their thread
            try:
                while not stop.wait(interval or self.lease_seconds / 3):
                    if not self._heartbeat(connection, claim):
                        lost.set()
                        return
            finally:
                connection.close()

        thread = threading.Thread(target=beat, name=f"heartbeat-{claim.task}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()

    def complete(self, claim: Claim, record: ResultRecord) -> bool:
        """Stores the result; ``False`` (nothing written) if the claim is no longer current."""
        return self._finish(claim, "done", result=json.dumps(record.to_dict()), error=None)

    def fail(self, claim: Claim, error: str) -> bool:
        """Records the error; the pair is claimed again on a later pass."""
        return self._finish(claim, "failed", result=None, error=error)

    def _finish(self, claim: Claim, status: str, result: str | None, error: str | None) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                "UPDATE evaluations SET status = ?, result = ?, error = ?, finished_at = ?, "
                "lease_expires = NULL WHERE checkpoint = ? AND task = ? AND token = ? AND status = 'running'",
                (status, result, error, time.time(), claim.checkpoint, claim.task, claim.token))
        return cursor.rowcount == 1

    def results(self) -> list[ResultRecord]:
        """Every completed evaluation's record, oldest first."""
        rows = self._connection.execute(
            "SELECT checkpoint, task, result FROM evaluations WHERE status = 'done' ORDER BY finished_at")
        return [ResultRecord.from_dict(json.loads(result), where=f"{self.path} ({checkpoint}, {task})")
                for checkpoint, task, result in rows]

    def rows(self) -> list[EvaluationRow]:
        """The state of every pair the store knows."""
        rows = self._connection.execute(
            "SELECT checkpoint, task, status, owner, attempts, error, lease_expires, finished_at "
            "FROM evaluations ORDER BY checkpoint, task")
        return [EvaluationRow(*row) for row in rows]


def _claimable(status: str, lease_expires: float | None, finished_at: float | None,
               now: float, pass_started: float | None) -> bool:
    """Done: never again. Failed: on a later pass. Running: only once its lease has expired."""
    if status == "done":
        return False
    if status == "failed":
        return pass_started is None or (finished_at or 0.0) < pass_started
    return lease_expires is None or lease_expires < now
