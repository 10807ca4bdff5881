"""``trimbert finetune``: fine-tune a pre-trained, pruned or imported encoder on one task over several seeds."""

from __future__ import annotations

import argparse
import pathlib

from configs.errors import TrimbertError


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> (1, 2, 3)."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--seeds expects comma-separated integers, got {text!r}") from error
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every fine-tuning command shares (finetune, evaluate, watch, study)."""
    parser.add_argument("--config", default=None,
                        help="config file or shipped name whose finetune section is used (default: the "
                             "pre-training model directory's config.yaml, else bert_base)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a config field, e.g. --set finetune.learning_rate=5e-5 (repeatable)")
    parser.add_argument("--seeds", type=parse_seeds, default=None, help="fine-tuning seeds, e.g. 1,2,3")
    parser.add_argument("--max-train-examples", type=int, default=None,
                        help="fine-tune on a fixed random subset of this many training examples")
    parser.add_argument("--glue-dir", default=None,
                        help="local GLUE data folder (CoLA/, MRPC/, ...); default: TensorFlow Datasets glue/*")
    parser.add_argument("--tfds-data-dir", default=None, help="TensorFlow Datasets data folder")
    parser.add_argument("--vocab", default=None,
                        help="the model's vocab.txt, when it is not in the model folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", required=True,
                        help="pre-training model directory, one of its checkpoints/ckpt-N, or a Hugging Face / "
                             "keras-hub folder (pruned models included)")
    parser.add_argument("--task", required=True, help="GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, "
                                                      "wnli) or sentiment-movies|amazon|nyt|tweets")
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder: result.json and GLUE submission files")


def load_config(args: argparse.Namespace, model_dir: pathlib.Path | None):
    """The config whose finetune section applies, with ``--set`` and the shortcut flags applied.

    Args:
        args: parsed arguments of :func:`add_config_arguments`.
        model_dir: the pre-training model directory, if ``--init`` is in one.
    """
    from configs import schema as config_lib

    name = args.config
    if name is None:
        name = model_dir / "config.yaml" if model_dir is not None else "bert_base"
    overrides = list(args.overrides)
    if args.seeds is not None:
        overrides.append(f"finetune.seeds=[{','.join(str(seed) for seed in args.seeds)}]")
    if args.max_train_examples is not None:
        if args.max_train_examples < 1:
            raise TrimbertError("--max-train-examples must be >= 1")
        overrides.append(f"finetune.max_train_examples={args.max_train_examples}")
    return config_lib.load(name, overrides)


def options(args: argparse.Namespace, init: str, task: str, out: str):
    """:class:`pipeline.finetune.FinetuneOptions` from the shared arguments."""
    from pipeline.finetune import FinetuneOptions

    return FinetuneOptions(init=str(init), task=task, out=str(out), glue_dir=args.glue_dir,
                           tfds_data_dir=args.tfds_data_dir, vocabulary=args.vocab)


def run(args: argparse.Namespace) -> int:
    from pipeline import finetune

    source = finetune.resolve_source(args.init)
    config = load_config(args, source.model_dir)
    finetune.run(config, options(args, args.init, args.task, args.out))
    return 0
