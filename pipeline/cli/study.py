"""``trimbert study layer-drop``: the command line of :mod:`pipeline.studies.layer_drop`."""

from __future__ import annotations

import argparse

from pipeline.cli.arguments import add_config_arguments, finetune_options, load_config
from pipeline.studies.layer_drop import STUDY_STRATEGIES, run_layer_drop


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _strategy_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in STUDY_STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown strategies {unknown}; choose from {', '.join(STUDY_STRATEGIES)}")
    return names

STUDIES = {"layer-drop": "Poor Man's BERT: every layer-dropping strategy, fine-tuned, beside the unpruned model"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", choices=tuple(STUDIES), help="; ".join(f"{k}: {v}" for k, v in STUDIES.items()))
    parser.add_argument("--init", required=True, help="pre-trained model (as for trimbert finetune --init)")
    parser.add_argument("--task", required=True, help="task to fine-tune on, e.g. sentiment-movies or rte")
    parser.add_argument("--drop", type=_int_list, required=True, help="numbers of blocks to drop, e.g. 2,4")
    parser.add_argument("--strategies", type=_strategy_list, default=list(STUDY_STRATEGIES),
                        help=f"comma-separated subset of {','.join(STUDY_STRATEGIES)} (default: all)")
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder: models/, runs/, layer_drop.{md,csv,json}")


def run(args: argparse.Namespace) -> int:
    from pipeline import storage
    from pipeline.finetune import run as finetune
    from pipeline.finetune import tasks as task_registry

    task = task_registry.get_task(args.task)
    config = load_config(args, finetune.resolve_source(args.init).model_dir)
    out = args.out
    run_layer_drop(config, args.init, task.name, args.drop, args.strategies, out,
                   lambda init, run_out: finetune_options(args, init, task.name, str(run_out)))
    print(storage.read_text(storage.join(out, "layer_drop.md")))
    print("wrote " + ", ".join(storage.join(out, f"layer_drop.{extension}") for extension in ("md", "csv", "json")))
    return 0
