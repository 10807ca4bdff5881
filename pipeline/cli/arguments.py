"""Argument helpers the fine-tuning commands share (finetune, evaluate, watch, study): not a command itself."""

from __future__ import annotations

import argparse
import pathlib
from typing import TYPE_CHECKING

import storage
from configs.errors import TrimbertError
from pipeline import model_dir as model_dir_lib

if TYPE_CHECKING:
    from pipeline.model_source import ModelSource


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


def load_config(args: argparse.Namespace, model_dir: str | pathlib.Path | None):
    """The config whose finetune section applies, with ``--set`` and the shortcut flags applied.

    Args:
        args: parsed arguments of :func:`add_config_arguments`.
        model_dir: the pre-training model directory, if ``--init`` is in one.
    """
    from configs import schema as config_lib

    name = args.config
    if name is None:
        name = storage.join(model_dir, model_dir_lib.CONFIG_FILE) if model_dir is not None else "bert_base"
    overrides = list(args.overrides)
    if args.seeds is not None:
        overrides.append(f"finetune.seeds=[{','.join(str(seed) for seed in args.seeds)}]")
    if args.max_train_examples is not None:
        if args.max_train_examples < 1:
            raise TrimbertError("--max-train-examples must be >= 1")
        overrides.append(f"finetune.max_train_examples={args.max_train_examples}")
    return config_lib.load(name, overrides)


def finetune_options(args: argparse.Namespace, init: str | ModelSource, task: str, out: str):
    """:class:`pipeline.finetune.run.FinetuneOptions` from the shared arguments.

    Args:
        args: parsed arguments of :func:`add_config_arguments`.
        init: a path, or the :class:`pipeline.model_source.ModelSource` a caller opened.
        task: the task name.
        out: the output folder.
    """
    from pipeline.finetune.run import FinetuneOptions

    return FinetuneOptions(init=init, task=task, out=str(out), glue_dir=args.glue_dir,
                           tfds_data_dir=args.tfds_data_dir, vocabulary=args.vocab)


def open_session_from(args: argparse.Namespace):
    """The evaluation session of ``trimbert evaluate`` / ``watch`` arguments."""
    from pipeline.evaluation import scheduler

    model_dir = storage.absolute(args.model_dir)
    config = load_config(args, model_dir) if storage.isfile(storage.join(model_dir, model_dir_lib.CONFIG_FILE)) \
        else None
    return scheduler.open_session(model_dir, args.tasks, args.store, args.lease_seconds, config,
                                  finetune_options(args, "", "", ""))


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``trimbert evaluate`` (``trimbert watch`` adds its schedule to them)."""
    from pipeline.evaluation.scheduler import STORE_FILENAME

    parser.add_argument("--model-dir", required=True, help="pre-training model directory (checkpoints/ckpt-N)")
    parser.add_argument("--tasks", required=True,
                        help="comma-separated tasks; 'glue' and 'sentiment' name the groups")
    parser.add_argument("--pending", action="store_true",
                        help="evaluate every checkpoint x task not done yet (without it: list the store)")
    parser.add_argument("--store", default=None,
                        help=f"results store, a local SQLite file (default MODEL_DIR/{STORE_FILENAME}; "
                             f"required when MODEL_DIR is on object storage)")
    parser.add_argument("--lease-seconds", type=float, default=900.0,
                        help="a claim not renewed for this long is taken over (crashed watcher)")
    add_config_arguments(parser)
