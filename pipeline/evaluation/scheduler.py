"""``trimbert evaluate``: fine-tune every checkpoint of a pre-training run on every task, exactly once.

The pairs (checkpoint x task) live in a :class:`pipeline.evaluation.store.ResultStore` (SQLite,
default ``MODEL_DIR/evaluations.sqlite``). A pass claims one pair at a time, so any
number of processes (cron jobs, two ``trimbert watch`` loops, a manual run) can share
the work: a pair is fine-tuned by whoever claims it, its lease kept alive while it
runs; the record is stored on success, the error on failure. A failed pair is claimed
again on the next pass, never twice within one (so a pass ends). ``trimbert watch``
(``pipeline.cli.watch``) repeats passes on a schedule to pick up new checkpoints.

Each evaluation writes ``MODEL_DIR/evaluations/ckpt-N/TASK/result.json`` (and GLUE
submission files) like ``trimbert finetune``; ``trimbert report`` reads the store or
those folders.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import socket
import time
from collections.abc import Callable

from configs.errors import TrimbertError
from pipeline import storage
from pipeline.pretrain import model_dir as model_dir_lib

STORE_FILENAME = "evaluations.sqlite"
RESULTS_DIRNAME = "evaluations"
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
    """What one pass did: pairs completed and failed (with their errors)."""

    completed: list[tuple[str, str]]
    failed: list[tuple[str, str, str]]


def run_pass(store, checkpoints: list[str], tasks: list[str], evaluate: Callable, owner: str,
             log: Callable[[str], None] = print) -> PassSummary:
    """Evaluates the pairs still pending, one claim at a time, until none is left for this pass.

    Args:
        store: the :class:`pipeline.evaluation.store.ResultStore`.
        checkpoints: checkpoint paths (one spelling: absolute).
        tasks: task names.
        evaluate: ``(checkpoint, task) -> ResultRecord``; any exception marks the pair failed.
        owner: recorded with each claim (``host:pid``).
        log: progress printer.
    """
    pass_started = time.time()
    summary = PassSummary([], [])
    while True:
        claims = store.claim_pending(checkpoints, tasks, owner, limit=1, pass_started=pass_started)
        if not claims:
            return summary
        claim = claims[0]
        log(f"evaluate {storage.name(claim.checkpoint)} x {claim.task} (attempt {claim.attempt})")
        with store.keep_alive(claim) as lost:
            try:
                record = evaluate(claim.checkpoint, claim.task)
            except Exception as error:  # any failure is recorded with its message and retried next pass
                message = f"{type(error).__name__}: {error}"
                store.fail(claim, message)
                summary.failed.append((claim.checkpoint, claim.task, message))
                log(f"failed {storage.name(claim.checkpoint)} x {claim.task}: {message}")
                continue
        if lost.is_set() or not store.complete(claim, record):
            log(f"lease on {claim.checkpoint} x {claim.task} was lost; another watcher owns it now")
            continue
        summary.completed.append((claim.checkpoint, claim.task))
        log(f"done {storage.name(claim.checkpoint)} x {claim.task}: score {record.score:.4f}")


def finetune_evaluator(config, model_dir: str, template) -> Callable:
    """``(checkpoint, task) -> ResultRecord`` running ``trimbert finetune`` into ``evaluations/``.

    Args:
        config: the config whose finetune section every evaluation uses.
        model_dir: the pre-training model directory.
        template: a :class:`pipeline.finetune.run.FinetuneOptions` whose data and vocabulary fields apply
            to every evaluation (its init, task and out are replaced).
    """
    from pipeline.finetune import run as finetune

    def evaluate(checkpoint: str, task: str):
        out = storage.join(model_dir, RESULTS_DIRNAME, storage.name(checkpoint), task)
        return finetune.run(config, dataclasses.replace(template, init=checkpoint, task=task, out=out))

    return evaluate


@dataclasses.dataclass
class Session:
    """What a pass needs, resolved once from the arguments."""

    model_dir: str
    store: object
    tasks: list[str]
    evaluate: Callable
    owner: str


def open_session(model_dir: str | pathlib.Path, task_list: str, store_path: str | None, lease_seconds: float,
                 config, template) -> Session:
    """Opens the store and prepares the fine-tuning evaluator.

    Args:
        model_dir: the pre-training model directory.
        task_list: comma-separated tasks ('glue' and 'sentiment' name the groups).
        store_path: the SQLite store; ``None`` puts it in the model directory.
        lease_seconds: a claim not renewed for this long is taken over.
        config: the config whose finetune section every evaluation uses.
        template: options shared by every evaluation (see :func:`finetune_evaluator`).
    """
    from pipeline.evaluation.store import ResultStore
    from pipeline.finetune import tasks as task_registry

    model_dir = storage.absolute(model_dir)
    if not storage.isfile(storage.join(model_dir, model_dir_lib.CONFIG_FILE)):
        raise TrimbertError(f"--model-dir {model_dir}: not a pre-training model directory (no config.yaml)")
    tasks = [task.name for task in task_registry.parse_task_list(task_list)]
    if store_path is None and storage.is_url(model_dir):
        raise TrimbertError(f"--model-dir {model_dir} is on object storage, where the SQLite evaluation store "
                            f"cannot live (it needs a local disk); pass --store /local/path/{STORE_FILENAME}")
    store = ResultStore(store_path or storage.join(model_dir, STORE_FILENAME), lease_seconds=lease_seconds)
    return Session(model_dir, store, tasks, finetune_evaluator(config, model_dir, template),
                   owner=f"{socket.gethostname()}:{os.getpid()}")


def one_pass(session: Session, log: Callable[[str], None] = print) -> PassSummary:
    """Lists the checkpoints now on disk and evaluates what is pending."""
    checkpoints = list_checkpoints(session.model_dir)
    summary = run_pass(session.store, checkpoints, session.tasks, session.evaluate, session.owner, log)
    log(f"pass over {len(checkpoints)} checkpoint(s) x {len(session.tasks)} task(s): "
        f"{len(summary.completed)} evaluated, {len(summary.failed)} failed")
    return summary


