"""A user's own fine-tuning task, read from their files: its description, its :class:`Task`, its examples.

``trimbert finetune --task NAME --train FILE --dev FILE [--test FILE] --text-column C [--text-column C2]
--label-column L [--regression]`` (and every command that takes ``--task``/``--tasks``) describes the task
as a :class:`pipeline.finetune.tasks.TaskFiles`; :func:`build_task` makes the :class:`Task` every
fine-tuning path runs, holding that description in ``Task.user_files``, so ``sources.load_examples``
reads its splits from the files (``train`` -> the train file, ``validation`` -> the dev file, ``test`` ->
the test file) through :mod:`pipeline.finetune.table_files` (CSV, TSV, JSON Lines, Parquet).

Labels:

- Classes (the default): a label is a string or an integer (a float with no fraction counts as that
  integer; ``true``/``false`` as those strings). The class names are the distinct labels of the
  **training file only**, in numeric order when every one is an integer (``"2" < "10"``), else sorted
  as strings; ``Task.label_names`` records that order, so class ``i`` is ``label_names[i]`` in the
  head and in every split. A dev or test label never seen in training is an error (naming it, how many
  rows hold it and the file), as is a training file with a single class.
- Regression (``--regression``): a label is a finite number (or a string holding one); the head
  predicts one score.

Metrics: classes report accuracy, macro-F1 and, with exactly two classes, Matthews correlation; the
score that picks the best seed is macro-F1, because with imbalanced classes accuracy rewards always
predicting the majority class while macro-F1 weighs every class alike. Regression reports Pearson
and Spearman correlation, scored by their mean (as GLUE scores STS-B). A test file must hold the label
column too: it gives test metrics, like the sentiment tasks' labelled test sets; user tasks write no
GLUE submission files.

Every text must be a non-blank string, the second text of a pair too (a blank one is an error naming
its line and column), and every label non-blank. Errors are one line naming the file and line; they
come before any training (:func:`check` reads every split).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterator

import storage
from configs.errors import TrimbertError
from pipeline.finetune import table_files
from pipeline.finetune.metrics import TaskMetrics
from pipeline.finetune.tasks import Example, Task, TaskFiles

CLASS_METRICS = TaskMetrics(metrics=("accuracy", "macro_f1"), score=("macro_f1",))
BINARY_METRICS = TaskMetrics(metrics=("accuracy", "macro_f1", "matthews"), score=("macro_f1",))
REGRESSION_METRICS = TaskMetrics(metrics=("pearson", "spearman"), score=("pearson", "spearman"))
SPLITS = ("train", "validation", "test")
_INTEGER = re.compile(r"[+-]?\d+")


def signature(files: TaskFiles) -> dict:
    """What decides a user task's numbers, for a study's ``study.json``: its description with absolute
    paths, and each file's sha256 (so a file changed in place is a changed study too)."""
    paths = {"train": files.train, "dev": files.dev, "test": files.test}
    return {**dataclasses.asdict(files), **{key: path and storage.absolute(path) for key, path in paths.items()},
            "sha256": {key: file_sha256(path) for key, path in paths.items() if path is not None}}


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    for piece in storage.read_chunks(path, 1 << 20):
        digest.update(piece)
    return digest.hexdigest()


def build_task(files: TaskFiles) -> Task:
    """The :class:`Task` of a user's files: its class names from the training file (or regression)
    and its metrics. Reads the training file's label column."""
    label_names = () if files.regression else class_names(files)
    metrics = REGRESSION_METRICS if files.regression else (BINARY_METRICS if len(label_names) == 2
                                                           else CLASS_METRICS)
    return Task(name=files.name, display_name=files.name, text_features=files.text_columns,
                label_names=label_names, metrics=metrics, user_files=files)


def class_names(files: TaskFiles) -> tuple[str, ...]:
    """The training file's distinct labels as strings: numeric order if every one is an integer, else
    sorted as strings.

    Raises:
        TrimbertError: a blank or non-class label (naming its line); fewer than two classes.
    """
    names = {_class_name(row.values[0], row.where, files.label_column)
             for row in _rows(files.train, [files.label_column])}
    if all(_INTEGER.fullmatch(name) for name in names):
        ordered = sorted(names, key=lambda name: (int(name), name))
    else:
        ordered = sorted(names)
    if len(ordered) < 2:
        raise TrimbertError(f"{files.train}: column {files.label_column!r} holds one class only "
                            f"({', '.join(ordered)}); a classifier needs two or more (for scores: --regression)")
    return tuple(ordered)


def read_examples(task: Task, split: str) -> list[Example]:
    """One split of a user's task, labels as indices of ``task.label_names`` (or float scores).

    Raises:
        TrimbertError: naming the file (a missing column, no rows), the line (a blank text or label, a
            label that is not a class or a number), or the label, its count and the file (a dev or test
            label the training file never has).
    """
    files = task.user_files
    path = files.path(split)
    columns = [*files.text_columns, files.label_column]
    index = {name: position for position, name in enumerate(task.label_names)}
    examples: list[Example] = []
    unseen: dict[str, list] = {}  # label never seen in training -> [rows holding it, where the first was read]
    for row in _rows(path, columns):
        texts = [_text(value, column, row.where) for value, column in zip(row.values, files.text_columns,
                                                                           strict=False)]
        raw = row.values[-1]
        if task.is_regression:
            label: int | float = _score(raw, row.where, files.label_column)
        else:
            name = _class_name(raw, row.where, files.label_column)
            if name not in index:
                unseen.setdefault(name, [0, row.where])[0] += 1
                continue
            label = index[name]
        examples.append(Example(texts[0], texts[1] if len(texts) == 2 else None, label, len(examples)))
    if unseen:
        raise TrimbertError(f"{path}: " + "; ".join(
            f"label {name!r} in {count} row(s) (first: {first})" for name, (count, first) in unseen.items())
            + f" never occurs in the training file {files.train} (classes: {', '.join(task.label_names)})")
    return examples


def check(task: Task) -> dict[str, int]:
    """Reads every split of a user's task once, so a bad file fails before anything trains; split -> rows."""
    return {split: len(read_examples(task, split)) for split in SPLITS
            if split != "test" or task.user_files.test is not None}


def _rows(path: str, columns: list[str]) -> Iterator[table_files.Row]:
    """Every row of ``columns``; a file with no rows is an error naming it."""
    count = 0
    for batch in table_files.iter_rows(path, columns):
        count += len(batch)
        yield from batch
    if not count:
        raise TrimbertError(f"{path} holds no rows")


def _text(value, column: str, where: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise TrimbertError(f"{where}: blank text in column {column!r}")
    if not isinstance(value, str):
        raise TrimbertError(f"{where}: column {column!r} holds {type(value).__name__} {value!r}, not text")
    return value


def _class_name(value, where: str, column: str) -> str:
    """A label as its class name: strings stripped, integers (and whole floats) in decimal, booleans
    as ``true``/``false``."""
    if value is None or (isinstance(value, str) and not value.strip()) or (
            isinstance(value, float) and math.isnan(value)):  # pandas writes a missing label as NaN
        raise TrimbertError(f"{where}: blank label in column {column!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise TrimbertError(f"{where}: label {value!r} in column {column!r} is a fraction, not a class "
                            f"(for scores: --regression)")
    if isinstance(value, str):
        return value.strip()
    raise TrimbertError(f"{where}: label in column {column!r} is a {type(value).__name__}, not a class name")


def _score(value, where: str, column: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()) or (
            isinstance(value, float) and math.isnan(value)):
        raise TrimbertError(f"{where}: blank label in column {column!r}")
    try:
        if isinstance(value, bool):
            raise ValueError
        score = float(value)
    except (TypeError, ValueError):
        raise TrimbertError(f"{where}: label {value!r} in column {column!r} is not a number "
                            f"(--regression needs numeric scores)") from None
    if not math.isfinite(score):
        raise TrimbertError(f"{where}: label {value!r} in column {column!r} is not a finite number")
    return score
