"""``trimbert launch``: the workers of one multi-worker pre-training run, started and restarted together.

    trimbert launch --workers N [--max-restarts K] [--port-base P] -- pretrain ARGS...
    trimbert launch --emit kubernetes --workers N --image IMAGE [--name NAME] [--namespace NS] -- pretrain ARGS...

The first runs N ``trimbert pretrain ARGS --strategy multi_worker`` processes on this machine under
``pipeline.launcher`` (restarts, output, signals); the second prints a Kubernetes Indexed Job and its
headless Service (``pipeline.kubernetes_job``) and applies nothing. ARGS may name ``--strategy
multi_worker`` themselves; any other strategy is refused, since each worker is its own process.
"""

from __future__ import annotations

import argparse

from configs.errors import TrimbertError

STRATEGY_FLAG = "--strategy"
WORKER_STRATEGY = "multi_worker"
DEFAULT_KUBERNETES_PORT = 2222
DEFAULT_NAME = "trimbert-pretrain"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit code: 0 when every worker finished; 2 for a configuration or data error (never restarted) "
                     "or a bad launch command; else the failing worker's code once no restart is left (128+N for a "
                     "death by signal N); after SIGTERM or Ctrl-C to launch, the workers' (143: they checkpointed)")
    parser.add_argument("--workers", type=int, required=True, metavar="N", help="how many worker processes (or pods)")
    parser.add_argument("--max-restarts", type=int, default=3, metavar="K",
                        help="how many times all workers are started again after one fails (default 3) (exit 2, a "
                             "configuration or data error, is never restarted); with --emit kubernetes, the "
                             "Job's backoffLimit")
    parser.add_argument("--port-base", type=int, default=None, metavar="P",
                        help="worker i listens on port P+i (default: free ports, new ones at each restart); "
                             f"with --emit kubernetes, every pod's port (default {DEFAULT_KUBERNETES_PORT})")
    parser.add_argument("--grace-seconds", type=float, default=30.0, metavar="SECONDS",
                        help="between SIGTERM and SIGKILL when workers are stopped (default 30); with --emit "
                             "kubernetes, the pods' terminationGracePeriodSeconds")
    parser.add_argument("--emit", choices=("kubernetes",), default=None,
                        help="print a manifest instead of running: an Indexed Job and its headless Service")
    parser.add_argument("--image", default=None, help="with --emit kubernetes: a container image with trimbert "
                                                      "installed (the `trimbert` command on its PATH)")
    parser.add_argument("--name", default=None,
                        help=f"with --emit kubernetes: the Job's name (its pods are NAME-0, NAME-1, ...; default "
                             f"{DEFAULT_NAME})")
    parser.add_argument("--namespace", default=None, help="with --emit kubernetes: the namespace")
    parser.add_argument("worker_arguments", nargs=argparse.REMAINDER, metavar="-- pretrain ARGS",
                        help="the command every worker runs")


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise TrimbertError(f"--workers must be at least 1, got {args.workers}")
    if args.max_restarts < 0:
        raise TrimbertError(f"--max-restarts must be 0 or more, got {args.max_restarts}")
    if args.grace_seconds < 0:
        raise TrimbertError(f"--grace-seconds must be 0 or more, got {args.grace_seconds}")
    arguments = worker_arguments(args.worker_arguments, verbose=args.show_tensorflow_logs)
    if args.emit == "kubernetes":
        return _emit_kubernetes(args, arguments)
    for option in ("image", "name", "namespace"):
        if getattr(args, option) is not None:
            raise TrimbertError(f"--{option} is for --emit kubernetes only")
    if args.port_base is not None and not 0 < args.port_base <= 65536 - args.workers:
        raise TrimbertError(f"--port-base {args.port_base}: ports {args.port_base} to "
                            f"{args.port_base + args.workers - 1} are not all valid ports")
    import sys

    from pipeline.launcher import Supervisor

    supervisor = Supervisor([sys.executable, "-m", "pipeline.cli", *arguments], args.workers, args.max_restarts,
                            args.port_base, args.grace_seconds)
    return supervisor.run()


def worker_arguments(given: list[str], verbose: bool = False) -> list[str]:
    """The ``trimbert`` arguments of every worker: ``pretrain ARGS --strategy multi_worker`` (the strategy added
    unless ARGS name it), led by ``--verbose`` when the launch was verbose."""
    arguments = list(given)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if arguments[:1] != ["pretrain"]:
        found = f"got {' '.join(arguments[:2])!r}" if arguments else "got nothing"
        raise TrimbertError(f"give the workers' command after --, as in `trimbert launch --workers 2 -- pretrain "
                            f"--config ... --data ... --model-dir ...` ({found}; only pretrain runs under launch)")
    strategy = _named_strategy(arguments[1:])
    if strategy is None:
        arguments += [STRATEGY_FLAG, WORKER_STRATEGY]
    elif strategy != WORKER_STRATEGY:
        raise TrimbertError(f"{STRATEGY_FLAG} {strategy}: each worker launch starts is one process of a "
                            f"{WORKER_STRATEGY} cluster; leave {STRATEGY_FLAG} out (launch adds {WORKER_STRATEGY})")
    return (["--verbose"] if verbose else []) + arguments


def _named_strategy(arguments: list[str]) -> str | None:
    """The value of the last ``--strategy`` in pretrain's arguments (``--strategy X``, ``--strategy=X`` or an
    abbreviation argparse accepts, ``--st`` and longer), or None."""
    strategy = None
    for position, token in enumerate(arguments):
        name, equals, value = token.partition("=")
        if len(name) >= 4 and STRATEGY_FLAG.startswith(name):
            if equals:
                strategy = value
            elif position + 1 < len(arguments):
                strategy = arguments[position + 1]
            else:
                raise TrimbertError(f"{token} needs a value")
    return strategy


def _emit_kubernetes(args: argparse.Namespace, arguments: list[str]) -> int:
    from pipeline import kubernetes_job

    if not args.image:
        raise TrimbertError("--emit kubernetes needs --image (a container image with trimbert installed)")
    port = DEFAULT_KUBERNETES_PORT if args.port_base is None else args.port_base
    documents = kubernetes_job.manifest(
        name=args.name or DEFAULT_NAME, namespace=args.namespace, image=args.image, workers=args.workers, port=port,
        max_restarts=args.max_restarts, grace_seconds=args.grace_seconds, arguments=arguments)
    print(kubernetes_job.to_yaml(documents), end="")
    return 0
