"""Fine-tuning results: the record every evaluation writes, and the SQLite store of scheduled ones.

A :class:`ResultRecord` is one (checkpoint, task) evaluation over several seeds:
per-seed dev (and labelled test) metrics, their mean and standard deviation,
the best-on-dev seed, and what it cost (fine-tune wall-clock and
accelerator-hours, plus the pre-training accelerator-hours read from the
``summary.json`` that pre-training writes next to or above its checkpoints).

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
import datetime
import json
import pathlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from configs.errors import TrimbertError
from pipeline import compute, metrics
from pipeline.files import write_json

RESULT_FILENAME = "result.json"  # what fine-tuning writes; `trimbert report DIR` looks for *result.json
SUMMARY_FILENAME = "summary.json"  # written by pre-training; holds "accelerator_hours"
SUMMARY_LEVELS = 3  # the checkpoint itself (if a folder), its folder, and two above


# ---------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class SeedResult:
    """One fine-tuning run.

    Args:
        seed: the run's random seed.
        dev_metrics: metrics on the task's dev split(s), "score" included.
        test_metrics: metrics on a labelled test split (the sentiment tasks); empty if none.
    """

    seed: int
    dev_metrics: dict[str, float]
    test_metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ResultRecord:
    """One (checkpoint, task) evaluation over several seeds; see :func:`make_record`.

    Args:
        checkpoint: path of the evaluated checkpoint or model folder.
        model_config: config name of the model (e.g. ``tiny``, ``minilm_l6``).
        parameters: encoder parameter count.
        task: task name (``pipeline.glue.TASKS``).
        seed_results: one entry per seed, in run order.
        metric_mean: dev metric -> mean over seeds.
        metric_std: dev metric -> sample standard deviation over seeds (0 for one seed).
        test_metric_mean: labelled-test metric -> mean over seeds (empty if none).
        test_metric_std: labelled-test metric -> standard deviation over seeds.
        best_seed: the seed with the highest dev score (the first on ties).
        finetune_seconds: measured fine-tuning wall-clock, all seeds.
        finetune_accelerator_hours: devices x that wall-clock in hours.
        pretrain_accelerator_hours: from the checkpoint's ``summary.json``; ``None`` if not found.
        inference_latency_ms: CPU latency per example if measured, else ``None``.
        started_at: ISO-8601 UTC time the evaluation began.
        finished_at: ISO-8601 UTC time it ended.
    """

    checkpoint: str
    model_config: str
    parameters: int
    task: str
    seed_results: list[SeedResult]
    metric_mean: dict[str, float]
    metric_std: dict[str, float]
    test_metric_mean: dict[str, float]
    test_metric_std: dict[str, float]
    best_seed: int
    finetune_seconds: float
    finetune_accelerator_hours: float
    pretrain_accelerator_hours: float | None
    inference_latency_ms: float | None
    started_at: str
    finished_at: str

    @property
    def seeds(self) -> list[int]:
        return [result.seed for result in self.seed_results]

    @property
    def score(self) -> float:
        """Mean dev score over seeds."""
        return self.metric_mean["score"]

    @property
    def best(self) -> SeedResult:
        """The best-on-dev seed's result."""
        return next(result for result in self.seed_results if result.seed == self.best_seed)

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": self.seeds, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> ResultRecord:
        """Builds a record from JSON data; errors name ``where`` and the bad field."""
        if not isinstance(raw, dict):
            raise TrimbertError(f"{where}: a result record must be a JSON object")
        names = [field.name for field in dataclasses.fields(cls)]
        missing = [name for name in names if name not in raw]
        unknown = sorted(set(raw) - set(names) - {"seeds"})
        if missing or unknown:
            raise TrimbertError(f"{where}: not a result record (missing fields: {', '.join(missing) or '-'}; "
                                f"unknown fields: {', '.join(unknown) or '-'})")
        values = {name: raw[name] for name in names}
        try:
            values["seed_results"] = [SeedResult(**result) for result in raw["seed_results"]]
        except TypeError as error:
            raise TrimbertError(f"{where}: malformed seed_results: {error}") from error
        return cls(**values)

    def save(self, path: pathlib.Path) -> pathlib.Path:
        """Writes the record as JSON (via a temporary file, so readers never see half of it)."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: pathlib.Path) -> ResultRecord:
        try:
            raw = json.loads(pathlib.Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise TrimbertError(f"{path}: cannot read result record: {error}") from error
        return cls.from_dict(raw, where=str(path))


def make_record(checkpoint: str | pathlib.Path, model_config: str, parameters: int, task: str,
                seed_results: Sequence[SeedResult], finetune_seconds: float, devices: int,
                started_at: str, inference_latency_ms: float | None = None,
                finished_at: str | None = None) -> ResultRecord:
    """Summarises the seeds of one evaluation into a :class:`ResultRecord`.

    Args:
        checkpoint: the evaluated checkpoint or model folder.
        model_config: config name of the model.
        parameters: encoder parameter count.
        task: task name; its metric table must know it.
        seed_results: one per seed; dev metrics must hold "score".
        finetune_seconds: measured fine-tuning wall-clock (``TrainingClock.seconds``), all seeds.
        devices: accelerators (or replicas) fine-tuning ran on.
        started_at: ISO-8601 UTC start time (:func:`utc_now`).
        inference_latency_ms: measured CPU latency per example, if any.
        finished_at: ISO-8601 UTC end time; default now.
    """
    metrics.task_metrics(task)
    if not seed_results:
        raise TrimbertError(f"{task}: a result needs at least one seed")
    dev_mean, dev_std = mean_and_std([result.dev_metrics for result in seed_results])
    test_mean, test_std = mean_and_std(
        [result.test_metrics for result in seed_results if result.test_metrics])
    best = max(seed_results, key=lambda result: result.dev_metrics["score"])  # max keeps the first on ties
    return ResultRecord(
        checkpoint=str(checkpoint), model_config=model_config, parameters=int(parameters), task=task,
        seed_results=list(seed_results), metric_mean=dev_mean, metric_std=dev_std,
        test_metric_mean=test_mean, test_metric_std=test_std, best_seed=best.seed,
        finetune_seconds=float(finetune_seconds),
        finetune_accelerator_hours=compute.accelerator_hours(devices, finetune_seconds),
        pretrain_accelerator_hours=read_pretrain_accelerator_hours(pathlib.Path(checkpoint)),
        inference_latency_ms=inference_latency_ms, started_at=started_at,
        finished_at=finished_at or utc_now())


def mean_and_std(per_seed: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single seed) of each metric."""
    if not per_seed:
        return {}, {}
    names = list(per_seed[0])
    if any(list(values) != names for values in per_seed):
        raise TrimbertError(f"seeds report different metrics: {[sorted(values) for values in per_seed]}")
    columns = {name: np.array([values[name] for values in per_seed], dtype=np.float64) for name in names}
    mean = {name: float(column.mean()) for name, column in columns.items()}
    std = {name: float(column.std(ddof=1)) if len(column) > 1 else 0.0 for name, column in columns.items()}
    return mean, std


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def find_pretrain_summary(checkpoint: pathlib.Path) -> pathlib.Path | None:
    """The ``summary.json`` in the checkpoint folder or up to two folders above it, nearest first."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for candidate in [folder, *folder.parents][:SUMMARY_LEVELS]:
        if (candidate / SUMMARY_FILENAME).is_file():
            return candidate / SUMMARY_FILENAME
    return None


def read_pretrain_accelerator_hours(checkpoint: pathlib.Path) -> float | None:
    """Pre-training accelerator-hours from the checkpoint's ``summary.json``; ``None`` if absent.

    A Hugging Face or keras-hub model has no summary: its pre-training cost is unknown here.
    """
    summary = find_pretrain_summary(pathlib.Path(checkpoint))
    if summary is None:
        return None
    try:
        value = json.loads(summary.read_text()).get("accelerator_hours")
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        raise TrimbertError(f"{summary}: cannot read the pre-training summary: {error}") from error
    return None if value is None else float(value)


# ---------------------------------------------------------------------------
# The store of scheduled evaluations
# ---------------------------------------------------------------------------

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
        self.path = pathlib.Path(path)
        self.lease_seconds = lease_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = self._connect()
        with self._transaction() as connection:
            connection.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves; timeout waits on other writers.
        connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        return connection

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
