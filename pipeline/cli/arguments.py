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
    own = parser.add_argument_group(
        "your own task", "fine-tune on your files: name the task in --task/--tasks (a name that is not a built-in "
                         "task) and give its files and columns; CSV, TSV, JSON Lines or Parquet, by file suffix")
    own.add_argument("--train", default=None, metavar="FILE", help="your task's training file")
    own.add_argument("--dev", default=None, metavar="FILE",
                     help="your task's dev file: metrics per seed, and the best seed")
    own.add_argument("--test", default=None, metavar="FILE",
                     help="your task's labelled test file: test metrics (optional)")
    own.add_argument("--text-column", dest="text_columns", action="append", default=[], metavar="NAME",
                     help="the text column; give it twice for sentence pairs (first, second)")
    own.add_argument("--label-column", default=None, metavar="NAME",
                     help="the label column: class names or integers (classes: accuracy, macro-F1, MCC for "
                          "two classes; the best seed by macro-F1), or numbers with --regression")
    own.add_argument("--regression", action="store_true",
                     help="labels are scores (Pearson and Spearman; the best seed by their mean)")


_OWN_TASK_FLAGS = {"train": "--train", "dev": "--dev", "test": "--test", "text_columns": "--text-column",
                   "label_column": "--label-column", "regression": "--regression"}
_OWN_TASK_HINT = ("; for your own task give a new name with --train FILE --dev FILE --text-column NAME "
                  "--label-column NAME")


def resolve_tasks(args: argparse.Namespace, text: str, flag: str) -> list:
    """The tasks ``--task``/``--tasks`` name (``flag``), a user's own among them when ``--train`` is given.

    The one name that is not a built-in task (nor a group) names the user's task, built from ``--train``,
    ``--dev``, ``--test``, ``--text-column``, ``--label-column`` and ``--regression``, and every split of
    its files is read once here, so a bad file fails before anything runs.

    Returns:
        :class:`pipeline.finetune.tasks.Task` per name, in order.
    """
    from pipeline.finetune import task_files
    from pipeline.finetune import tasks as task_registry

    names = [text.strip()] if flag == "--task" else task_registry.split_task_list(text)
    unknown = list(dict.fromkeys(name for name in names if not task_registry.is_known(name)))
    if args.train is None:
        given = [flag_name for field, flag_name in _OWN_TASK_FLAGS.items() if getattr(args, field)]
        if given:
            raise TrimbertError(f"{', '.join(given)} describe(s) your own task: give --train FILE too")
        try:
            return [task_registry.get_task(name) for name in names]
        except TrimbertError as error:
            raise TrimbertError(f"{error}{_OWN_TASK_HINT}") from None
    if not unknown:
        built_in = ", ".join(names)
        raise TrimbertError(f"--train describes your own task, but {flag} {text.strip()} names only built-in "
                            f"tasks ({built_in}); name your task in {flag} with a name of its own, not a "
                            f"built-in task's")
    if len(unknown) > 1:
        raise TrimbertError(f"{flag} names {len(unknown)} unknown tasks ({', '.join(unknown)}); one may be your "
                            f"own (--train ...), the others must be built-in: {', '.join(task_registry.TASKS)}")
    missing = [flag_name for field, flag_name in (("dev", "--dev"), ("text_columns", "--text-column"),
                                                   ("label_column", "--label-column")) if not getattr(args, field)]
    if missing:
        raise TrimbertError(f"--train needs {', '.join(missing)} too (your task {unknown[0]!r})")
    if len(args.text_columns) > 2:
        raise TrimbertError(f"--text-column given {len(args.text_columns)} times "
                            f"({', '.join(args.text_columns)}); a task has one text or a pair of two")
    files = task_files.TaskFiles(name=unknown[0], train=args.train, dev=args.dev, test=args.test,
                                 text_columns=tuple(args.text_columns), label_column=args.label_column,
                                 regression=args.regression)
    own = task_files.build_task(files)
    task_files.check(own)
    return [own if name == own.name else task_registry.get_task(name) for name in names]


def resolve_task(args: argparse.Namespace):
    """The one task of ``--task`` (:func:`resolve_tasks`)."""
    return resolve_tasks(args, args.task, "--task")[0]


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


def finetune_options(args: argparse.Namespace, init: str | ModelSource, task, out: str, keep_model: bool = False):
    """:class:`pipeline.finetune.run.FinetuneOptions` from the shared arguments.

    Args:
        args: parsed arguments of :func:`add_config_arguments`.
        init: a path, or the :class:`pipeline.model_source.ModelSource` a caller opened.
        task: the task name, or a :class:`pipeline.finetune.tasks.Task` (:func:`resolve_tasks`).
        out: the output folder.
        keep_model: save the best seed's model as ``out/model``: ``finetune`` does; evaluations of every
            checkpoint and studies, which fine-tune many models, do not (a BERT-base folder is ~440 MB).
    """
    from pipeline.finetune.run import FinetuneOptions

    return FinetuneOptions(init=init, task=task, out=str(out), glue_dir=args.glue_dir,
                           tfds_data_dir=args.tfds_data_dir, vocabulary=args.vocab, keep_model=keep_model)


def open_session_from(args: argparse.Namespace):
    """The evaluation session of ``trimbert evaluate`` / ``watch`` arguments."""
    from pipeline.evaluation import scheduler

    model_dir = storage.absolute(args.model_dir)
    config = load_config(args, model_dir) if storage.isfile(storage.join(model_dir, model_dir_lib.CONFIG_FILE)) \
        else None
    return scheduler.open_session(model_dir, resolve_tasks(args, args.tasks, "--tasks"), args.store,
                                  args.lease_seconds, config, finetune_options(args, "", "", ""))


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``trimbert evaluate`` (``trimbert watch`` adds its schedule to them)."""
    from pipeline.evaluation.scheduler import STORE_FILENAME

    parser.add_argument("--model-dir", required=True, help="pre-training model directory (checkpoints/ckpt-N)")
    parser.add_argument("--tasks", required=True,
                        help="comma-separated tasks; 'glue' and 'sentiment' name the groups; a new name with "
                             "--train ... adds your own task")
    parser.add_argument("--pending", action="store_true",
                        help="evaluate every checkpoint x task not done yet (without it: list the store)")
    parser.add_argument("--store", default=None,
                        help=f"results store, a local SQLite file (default MODEL_DIR/{STORE_FILENAME}; "
                             f"required when MODEL_DIR is on object storage)")
    parser.add_argument("--lease-seconds", type=float, default=900.0,
                        help="a claim not renewed for this long is taken over (crashed watcher)")
    add_config_arguments(parser)
