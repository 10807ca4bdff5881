"""``trimbert evaluate``: fine-tune every checkpoint of a pre-training run on every task, exactly once.

The pairs (checkpoint x task) live in a :class:`pipeline.evaluation.store.ResultStore` (SQLite,
default ``MODEL_DIR/evaluations.sqlite``). A pass claims one pair at a time, so any
number of processes (cron jobs, two ``trimbert watch`` loops, a manual run) can share
the work: a pair is fine-tuned by whoever claims it, its lease kept alive while it
runs; the record is stored on success, the error on failure. A failed pair is claimed
again on the next pass, never twice within one (so a pass ends). ``trimbert watch``
(``pipeline.cli.watch``) repeats passes on a schedule to pick up new checkpoints.

Exactly once in work, not only in the store:

* Each claim fine-tunes into its own folder, ``MODEL_DIR/evaluations/.claims/TOKEN/``. Only the
  holder of the current claim, once ``complete`` has stored its record, renames that folder to
  ``MODEL_DIR/evaluations/ckpt-N/TASK/`` (``result.json``, GLUE submission files, as ``trimbert
  finetune`` writes them); a losing or failed claim's folder is deleted. ``trimbert report``
  reads the store or those folders.
* A watcher whose lease was lost (it stalled past the lease and another took the pair over) is
  told through the event ``keep_alive`` sets; fine-tuning stops at its next step boundary and
  nothing of it is stored or promoted.

A user's own task (``--tasks mine --train ...``, :mod:`pipeline.finetune.task_files`) is stored under
its name like a built-in task: a pair already evaluated is not redone when its files change, so give
changed files a new task name (or another ``--store``).

Which errors are retried: an evaluation that raises :class:`TrimbertError` (missing data, a bad
setting), ``OSError`` (files, disks), ``ValueError`` (malformed data), ``MemoryError`` or a
TensorFlow ``OpError`` (e.g. out of memory on the device) is stored as failed with its message and
retried on a later pass. Any other exception (``TypeError``, ``AttributeError``, ``NameError``,
``KeyError``, ``IndexError``, ``RuntimeError``, ``AssertionError`` ...) is a bug that a retry
would only repeat: the claim is marked failed with the message, then the exception propagates and
the pass (and ``trimbert watch``) stops with a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence

import storage
from configs.errors import TrimbertError
from pipeline import model_dir as model_dir_lib

STORE_FILENAME = "evaluations.sqlite"
RESULTS_DIRNAME = "evaluations"
CLAIMS_DIRNAME = ".claims"  # inside RESULTS_DIRNAME: one working folder per claim
# Failures a later pass may not repeat; anything else is a bug (see the module docstring).
RETRYABLE_ERRORS = (TrimbertError, OSError, ValueError, MemoryError)
_CHECKPOINT_INDEX = re.compile(r"^(ckpt-(\d+))\.index$")


def list_checkpoints(model_dir: str | pathlib.Path) -> list[str]:
    """Every ``checkpoints/ckpt-N`` prefix of a pre-training run, oldest first, as absolute paths.

    A checkpoint counts once its ``.index`` file exists: TensorFlow writes it last.

    Args:
        model_dir: the pre-training model directory.
    """
    folder = storage.join(storage.absolute(model_dir), model_dir_lib.CHECKPOINTS_DIR)
    if not storage.isdir(folder):
        return []
    found = [(int(match.group(2)), storage.join(folder, match.group(1)))
             for match in map(_CHECKPOINT_INDEX.match, storage.listdir(folder)) if match]
    return [path for _, path in sorted(found)]


@dataclasses.dataclass(frozen=True)
class PassSummary:
    """What one pass did: pairs completed, failed (with their errors), and lost to another watcher."""

    completed: list[tuple[str, str]]
    failed: list[tuple[str, str, str]]
    lost: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def run_pass(store, checkpoints: list[str], tasks: list[str], evaluate: Callable, owner: str,
             results_dir: str, log: Callable[[str], None] = print) -> PassSummary:
    """Evaluates the pairs still pending, one claim at a time, until none is left for this pass.

    Args:
        store: the :class:`pipeline.evaluation.store.ResultStore`.
        checkpoints: checkpoint paths (one spelling: absolute).
        tasks: task names.
        evaluate: ``(checkpoint, task, out, lost) -> ResultRecord``: writes its files into the
            folder ``out`` and stops early (raising) once the ``threading.Event`` ``lost`` is set.
        owner: recorded with each claim (``host:pid``).
        results_dir: claims work in ``results_dir/.claims/TOKEN``; the winner's folder becomes
            ``results_dir/CHECKPOINT_NAME/TASK``.
        log: progress printer.

    Raises:
        Exception: an evaluation's error that is not in ``RETRYABLE_ERRORS`` (a bug), after the
            pair was marked failed.
    """
    pass_started = time.time()
    summary = PassSummary([], [])
    while True:
        claims = store.claim_pending(checkpoints, tasks, owner, limit=1, pass_started=pass_started)
        if not claims:
            return summary
        claim = claims[0]
        log(f"evaluate {_pair_name(claim)} (attempt {claim.attempt})")
        _run_claim(store, claim, evaluate, str(results_dir), summary, log)


def _run_claim(store, claim, evaluate: Callable, results_dir: str, summary: PassSummary,
               log: Callable[[str], None]) -> None:
    """Evaluates one claim in its own folder; stores and promotes the result only if the claim still holds."""
    workspace = storage.join(results_dir, CLAIMS_DIRNAME, claim.token)
    with store.keep_alive(claim) as lost:
        try:
            record = evaluate(claim.checkpoint, claim.task, workspace, lost)
        except Exception as error:
            storage.remove_tree(workspace)
            if is_retryable(error) and lost.is_set():  # most likely the stop we asked for
                _record_lost(claim, summary, log)
                return
            message = f"{type(error).__name__}: {error}"
            store.fail(claim, message)
            log(f"failed {_pair_name(claim)}: {message}")
            if not is_retryable(error):
                raise
            summary.failed.append((claim.checkpoint, claim.task, message))
            return
    if lost.is_set() or not store.complete(claim, record):
        storage.remove_tree(workspace)
        _record_lost(claim, summary, log)
        return
    _promote(workspace, storage.join(results_dir, storage.name(claim.checkpoint), claim.task))
    summary.completed.append((claim.checkpoint, claim.task))
    log(f"done {_pair_name(claim)}: score {record.score:.4f}")


def is_retryable(error: BaseException) -> bool:
    """Whether a later pass may succeed where this one failed (see the module docstring)."""
    if isinstance(error, RETRYABLE_ERRORS):
        return True
    # TensorFlow is only loaded if the evaluation imported it; only then can it have raised an OpError.
    tensorflow = sys.modules.get("tensorflow")
    return tensorflow is not None and isinstance(error, tensorflow.errors.OpError)


def _promote(workspace: str, final: str) -> None:
    """Makes the winning claim's folder the pair's results folder.

    On a local disk a rename on the same file system; on object storage a copy then a delete (what
    a rename is there), safe because only the claim's holder, after ``complete``, gets here.
    """
    storage.makedirs(workspace)  # an evaluation that wrote no files still gets its folder
    storage.remove_tree(final)  # left by an evaluation from before this store (the store said pending)
    storage.makedirs(storage.parent(final))
    if storage.is_url(final):
        storage.copy_tree(workspace, final)
        storage.remove_tree(workspace)
    else:
        os.rename(workspace, final)


def _record_lost(claim, summary: PassSummary, log: Callable[[str], None]) -> None:
    summary.lost.append((claim.checkpoint, claim.task))
    log(f"lease on {_pair_name(claim)} was lost; another watcher owns it now (this attempt's work is discarded)")


def _pair_name(claim) -> str:
    return f"{storage.name(claim.checkpoint)} x {claim.task}"


def finetune_evaluator(config, model_dir: str, template, tasks: Sequence = ()) -> Callable:
    """``(checkpoint, task, out, lost) -> ResultRecord`` running ``trimbert finetune`` into ``out``.

    Args:
        config: the config whose finetune section every evaluation uses.
        model_dir: the pre-training model directory.
        template: a :class:`pipeline.finetune.run.FinetuneOptions` whose data and vocabulary fields apply
            to every evaluation (its init, task and out are replaced).
        tasks: :class:`pipeline.finetune.tasks.Task` objects the store's task names stand for (a user's
            own task); other names are built-in tasks.
    """
    from pipeline.finetune import run as finetune

    by_name = {task.name: task for task in tasks}

    def evaluate(checkpoint: str, task: str, out: str, lost: threading.Event):
        return finetune.run(config, dataclasses.replace(template, init=checkpoint, task=by_name.get(task, task),
                                                        out=out), stop=lost)

    return evaluate


@dataclasses.dataclass
class Session:
    """What a pass needs, resolved once from the arguments."""

    model_dir: str
    store: object
    tasks: list[str]
    evaluate: Callable
    owner: str


def open_session(model_dir: str | pathlib.Path, task_list: Sequence, store_path: str | None,
                 lease_seconds: float, config, template) -> Session:
    """Opens the store and prepares the fine-tuning evaluator.

    Args:
        model_dir: the pre-training model directory.
        task_list: the tasks (:class:`pipeline.finetune.tasks.Task`, a user's own among them), stored by name.
        store_path: the SQLite store; ``None`` puts it in the model directory.
        lease_seconds: a claim not renewed for this long is taken over.
        config: the config whose finetune section every evaluation uses.
        template: options shared by every evaluation (see :func:`finetune_evaluator`).
    """
    from pipeline.evaluation.store import ResultStore

    model_dir = storage.absolute(model_dir)
    if not storage.isfile(storage.join(model_dir, model_dir_lib.CONFIG_FILE)):
        raise TrimbertError(f"--model-dir {model_dir}: not a pre-training model directory (no config.yaml)")
    tasks = [task.name for task in task_list]
    if store_path is None and storage.is_url(model_dir):
        raise TrimbertError(f"--model-dir {model_dir} is on object storage, where the SQLite evaluation store "
                            f"cannot live (it needs a local disk); pass --store /local/path/{STORE_FILENAME}")
    store = ResultStore(store_path or storage.join(model_dir, STORE_FILENAME), lease_seconds=lease_seconds)
    return Session(model_dir, store, tasks, finetune_evaluator(config, model_dir, template, task_list),
                   owner=f"{socket.gethostname()}:{os.getpid()}")


def one_pass(session: Session, log: Callable[[str], None] = print) -> PassSummary:
    """Lists the checkpoints now on disk and evaluates what is pending."""
    checkpoints = list_checkpoints(session.model_dir)
    if not checkpoints:
        folder = storage.join(session.model_dir, model_dir_lib.CHECKPOINTS_DIR)
        log(f"{folder}: no checkpoints yet; nothing to evaluate")
    summary = run_pass(session.store, checkpoints, session.tasks, session.evaluate, session.owner,
                       storage.join(session.model_dir, RESULTS_DIRNAME), log)
    log(f"pass over {len(checkpoints)} checkpoint(s) x {len(session.tasks)} task(s): "
        f"{len(summary.completed)} evaluated, {len(summary.failed)} failed")
    return summary


