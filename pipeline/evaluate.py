"""``trimbert evaluate``: fine-tune every checkpoint of a pre-training run on every task, exactly once.

The pairs (checkpoint x task) live in a :class:`pipeline.results.ResultStore` (SQLite,
default ``MODEL_DIR/evaluations.sqlite``). A pass claims one pair at a time, so any
number of processes (cron jobs, two ``trimbert watch`` loops, a manual run) can share
the work: a pair is fine-tuned by whoever claims it, its lease kept alive while it
runs; the record is stored on success, the error on failure. A failed pair is claimed
again on the next pass, never twice within one (so a pass ends). ``trimbert watch``
(``pipeline.watch``) repeats passes on a schedule to pick up new checkpoints.

Each evaluation writes ``MODEL_DIR/evaluations/ckpt-N/TASK/result.json`` (and GLUE
submission files) like ``trimbert finetune``; ``trimbert report`` reads the store or
those folders.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import socket
import time
from collections.abc import Callable

from configs.errors import TrimbertError

STORE_FILENAME = "evaluations.sqlite"
RESULTS_DIRNAME = "evaluations"
_CHECKPOINT_INDEX = re.compile(r"^(ckpt-(\d+))\.index$")


def list_checkpoints(model_dir: pathlib.Path) -> list[str]:
    """Every ``checkpoints/ckpt-N`` prefix of a pre-training run, oldest first, as absolute paths.

    A checkpoint counts once its ``.index`` file exists: TensorFlow writes it last.

    Args:
        model_dir: the pre-training model directory.
    """
    folder = pathlib.Path(model_dir).resolve() / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(match.group(2)), str(folder / match.group(1)))
             for match in map(_CHECKPOINT_INDEX.match, os.listdir(folder)) if match]
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
        store: the :class:`pipeline.results.ResultStore`.
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
        log(f"evaluate {pathlib.Path(claim.checkpoint).name} x {claim.task} (attempt {claim.attempt})")
        with store.keep_alive(claim) as lost:
            try:
                record = evaluate(claim.checkpoint, claim.task)
            except Exception as error:  # any failure is recorded with its message and retried next pass
                message = f"{type(error).__name__}: {error}"
                store.fail(claim, message)
                summary.failed.append((claim.checkpoint, claim.task, message))
                log(f"failed {pathlib.Path(claim.checkpoint).name} x {claim.task}: {message}")
                continue
        if lost.is_set() or not store.complete(claim, record):
            log(f"lease on {claim.checkpoint} x {claim.task} was lost; another watcher owns it now")
            continue
        summary.completed.append((claim.checkpoint, claim.task))
        log(f"done {pathlib.Path(claim.checkpoint).name} x {claim.task}: score {record.score:.4f}")


def finetune_evaluator(config, model_dir: pathlib.Path, args: argparse.Namespace) -> Callable:
    """``(checkpoint, task) -> ResultRecord`` running ``trimbert finetune`` into ``evaluations/``."""
    from pipeline import finetune
    from pipeline.finetune_cli import options

    def evaluate(checkpoint: str, task: str):
        out = model_dir / RESULTS_DIRNAME / pathlib.Path(checkpoint).name / task
        return finetune.run(config, options(args, checkpoint, task, str(out)))

    return evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.finetune_cli import add_config_arguments

    parser.add_argument("--model-dir", required=True, help="pre-training model directory (checkpoints/ckpt-N)")
    parser.add_argument("--tasks", required=True,
                        help="comma-separated tasks; 'glue' and 'sentiment' name the groups")
    parser.add_argument("--pending", action="store_true",
                        help="evaluate every checkpoint x task not done yet (without it: list the store)")
    parser.add_argument("--store", default=None, help=f"results store (default MODEL_DIR/{STORE_FILENAME})")
    parser.add_argument("--lease-seconds", type=float, default=900.0,
                        help="a claim not renewed for this long is taken over (crashed watcher)")
    add_config_arguments(parser)


@dataclasses.dataclass
class Session:
    """What a pass needs, resolved once from the arguments."""

    model_dir: pathlib.Path
    store: object
    tasks: list[str]
    evaluate: Callable
    owner: str


def open_session(args: argparse.Namespace) -> Session:
    """Opens the store and prepares the fine-tuning evaluator from parsed arguments."""
    from pipeline import glue
    from pipeline.finetune_cli import load_config
    from pipeline.results import ResultStore

    model_dir = pathlib.Path(args.model_dir).resolve()
    if not (model_dir / "config.yaml").is_file():
        raise TrimbertError(f"--model-dir {model_dir}: not a pre-training model directory (no config.yaml)")
    tasks = [task.name for task in glue.parse_task_list(args.tasks)]
    store = ResultStore(pathlib.Path(args.store or model_dir / STORE_FILENAME), lease_seconds=args.lease_seconds)
    config = load_config(args, model_dir)
    return Session(model_dir, store, tasks, finetune_evaluator(config, model_dir, args),
                   owner=f"{socket.gethostname()}:{os.getpid()}")


def one_pass(session: Session, log: Callable[[str], None] = print) -> PassSummary:
    """Lists the checkpoints now on disk and evaluates what is pending."""
    checkpoints = list_checkpoints(session.model_dir)
    summary = run_pass(session.store, checkpoints, session.tasks, session.evaluate, session.owner, log)
    log(f"pass over {len(checkpoints)} checkpoint(s) x {len(session.tasks)} task(s): "
        f"{len(summary.completed)} evaluated, {len(summary.failed)} failed")
    return summary


def list_store(session: Session) -> None:
    rows = session.store.rows()
    if not rows:
        print(f"{session.store.path}: no evaluations yet (run with --pending)")
    for row in rows:
        error = f"  {row.error}" if row.error else ""
        print(f"{row.status:8} attempts {row.attempts}  {pathlib.Path(row.checkpoint).name:12} {row.task}{error}")


def run(args: argparse.Namespace) -> int:
    session = open_session(args)
    try:
        if not args.pending:
            list_store(session)
            return 0
        summary = one_pass(session)
        return 1 if summary.failed else 0  # cron and CronJobs see a failed pass
    finally:
        session.store.close()
