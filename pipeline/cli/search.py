"""``trimbert search``: find the encoder shape that best trades size, speed and error (Bort)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", required=True,
                        help="a search-space YAML file or a shipped space (bort_space, tiny_space)")
    parser.add_argument("--teacher", required=True,
                        help="a trimbert model directory, or a Hugging Face folder / keras-hub preset with a "
                             "masked-LM head (`trimbert teacher --from` fits one to an encoder-only checkpoint)")
    parser.add_argument("--data", required=True,
                        help="a `trimbert preprocess` folder written at the space's proxy.seq_len")
    parser.add_argument("--out", required=True, help="journal, tables, plot and best_config.yaml; rerun to resume")
    parser.add_argument("--budget-steps", type=int, default=None,
                        help="total proxy training steps for the whole search (scales the space's rungs)")


def run(args: argparse.Namespace) -> int:
    from configs.errors import TrimbertError
    from pipeline.studies import search as search_run
    from pipeline.studies.search_space import load_space

    if args.budget_steps is not None and args.budget_steps < 1:
        raise TrimbertError("--budget-steps must be >= 1")
    space = load_space(args.space)
    options = search_run.SearchOptions(teacher=args.teacher, data_dir=args.data, out_dir=args.out,
                                       budget_steps=args.budget_steps)
    search_run.run(space, options, log=lambda line: print(line, flush=True))
    return 0
