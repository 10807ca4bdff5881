"""``trimbert watch``: ``trimbert evaluate --pending`` on a schedule, picking up new checkpoints.

Safe to run beside other watchers and cron jobs on the same store (see ``pipeline.evaluation.scheduler``).
"""

from __future__ import annotations

import argparse
import time

from pipeline.cli.arguments import add_evaluate_arguments, open_session_from
from pipeline.evaluation.scheduler import one_pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_evaluate_arguments(parser)
    parser.add_argument("--every", type=float, default=600.0, help="seconds between the starts of passes")
    parser.add_argument("--max-passes", type=int, default=None, help="stop after this many passes (default: never)")
    parser.set_defaults(pending=True)


def run(args: argparse.Namespace) -> int:
    session = open_session_from(args)
    passes = 0
    try:
        while True:
            started = time.monotonic()
            one_pass(session)
            passes += 1
            if args.max_passes is not None and passes >= args.max_passes:
                return 0
            wait = max(0.0, args.every - (time.monotonic() - started))
            print(f"next pass in {wait:.0f} s", flush=True)
            time.sleep(wait)
    finally:
        session.store.close()
