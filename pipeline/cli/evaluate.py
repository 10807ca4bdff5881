"""``trimbert evaluate``: fine-tune every checkpoint of a pre-training run on every task, exactly once.

The work is :mod:`pipeline.evaluation.scheduler`'s; this module reads the command line.
"""

from __future__ import annotations

import argparse
import pathlib

import storage
from configs.errors import TrimbertError
from pipeline.cli.arguments import add_evaluate_arguments, open_session_from
from pipeline.evaluation.scheduler import Session, list_checkpoints, one_pass
from pipeline.model_dir import CHECKPOINTS_DIR

add_arguments = add_evaluate_arguments


def list_store(session: Session) -> None:
    rows = session.store.rows()
    if not rows:
        print(f"{session.store.path}: no evaluations yet (run with --pending)")
    for row in rows:
        error = f"  {row.error}" if row.error else ""
        print(f"{row.status:8} attempts {row.attempts}  {pathlib.Path(row.checkpoint).name:12} {row.task}{error}")


def run(args: argparse.Namespace) -> int:
    session = open_session_from(args)
    try:
        if not args.pending:
            list_store(session)
            return 0
        if not list_checkpoints(session.model_dir):
            # A one-off pass asked for work that cannot exist yet; `trimbert watch` waits for it instead.
            folder = storage.join(session.model_dir, CHECKPOINTS_DIR)
            raise TrimbertError(f"{folder}: no checkpoints yet; nothing to evaluate "
                                f"(pre-train first, or use `trimbert watch` to evaluate them as they appear)")
        summary = one_pass(session)
        return 1 if summary.failed else 0  # cron and CronJobs see a failed pass
    finally:
        session.store.close()
