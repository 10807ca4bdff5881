"""``trimbert finetune``: fine-tune a pre-trained, pruned or imported encoder on one task over several seeds."""

from __future__ import annotations

import argparse

from pipeline.cli.arguments import add_config_arguments, finetune_options, load_config, resolve_task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", required=True,
                        help="pre-training model directory, one of its checkpoints/ckpt-N, or a Hugging Face / "
                             "keras-hub folder (pruned models included)")
    parser.add_argument("--task", required=True, help="GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, "
                                                      "wnli), sentiment-movies|amazon|nyt|tweets, or your own "
                                                      "task's name with --train ... (below)")
    add_config_arguments(parser)
    parser.add_argument("--out", required=True,
                        help="output folder: result.json, the best seed's model (model/, with its README.md "
                             "model card) and (GLUE tasks) submission files")


def run(args: argparse.Namespace) -> int:
    from pipeline.finetune import run as finetune
    from pipeline.model_source import ModelSource

    task = resolve_task(args)
    source = ModelSource.open(args.init, "--init")
    config = load_config(args, source.model_dir)
    finetune.run(config, finetune_options(args, source, task, args.out, keep_model=True))
    return 0
