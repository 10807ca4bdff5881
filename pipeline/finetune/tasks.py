"""Fine-tuning tasks: the nine GLUE tasks, the four embedded sentiment tasks, and a user's own task.

One table (``TASKS``) says, per task, what its examples look like (one text or
a pair, classes or a regression score), which metrics it reports and how they make its
score, where its examples come from (TensorFlow
Datasets ``glue/*``, the standard GLUE data folder's TSV files, or the
embedded sentiment asset) and how test predictions are submitted to the GLUE
server. Every source yields the same plain :class:`Example` list, so the
fine-tuning code has one path for all of them. A user's own task, read from
their files, is a :class:`Task` too, built by :mod:`pipeline.finetune.task_files`
(its ``user_files`` say where its examples are); it is never in ``TASKS``.

Split names are TensorFlow Datasets' for every source: ``train``,
``validation``, ``test``; MNLI has ``validation_matched``,
``validation_mismatched``, ``test_matched`` and ``test_mismatched``. Class
labels are the indices of ``Task.label_names``, which follow the TFDS
ClassLabel order, so a label means the same whichever source it came from.
Unlabelled (test) examples have ``label=None``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from configs.errors import TrimbertError
from pipeline.assets import corpora
from pipeline.finetune.metrics import ACCURACY, ArrayLike, TaskMetrics

Column = int | str  # a 0-based position, or a header name looked up in the file's first line
SubmissionLabels = Literal["indices", "names", "scores"]
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # also a folder name (evaluations/ckpt-N/TASK, runs/ROW/TASK)


@dataclasses.dataclass(frozen=True)
class Example:
    """One fine-tuning example.

    Args:
        text_a: the sentence, or the first of a pair.
        text_b: the second sentence of a pair; ``None`` for single-sentence tasks.
        label: class index (int), similarity score (float), or ``None`` if unlabelled.
        idx: the example's id; for GLUE test files, the index the submission must echo.
    """

    text_a: str
    text_b: str | None
    label: int | float | None
    idx: int


@dataclasses.dataclass(frozen=True)
class TsvLayout:
    """Where the fields of one split sit in its GLUE TSV file.

    Args:
        filename: file inside the task's folder, e.g. ``dev_matched.tsv``.
        header: whether the first line names the columns.
        text_columns: the one or two text columns.
        label_column: the label column; ``None`` for unlabelled test files.
        index_column: the id column written back in submissions; ``None``
            means the 0-based row number (as TFDS numbers ``idx``).
    """

    filename: str
    header: bool
    text_columns: tuple[Column, ...]
    label_column: Column | None = None
    index_column: Column | None = None


@dataclasses.dataclass(frozen=True)
class TaskFiles:
    """Where a user's own task lives and how to read it (:mod:`pipeline.finetune.task_files` builds its
    :class:`Task` and reads its examples).

    Args:
        name: the task's name (not a built-in task's); also names its result folders.
        train: the training file (CSV, TSV, JSON Lines or Parquet; local or a URL).
        dev: the dev file: metrics per seed and the best-seed choice.
        test: an optional labelled test file: test metrics.
        text_columns: the one or two text columns, in order (a pair's first and second text).
        label_column: the label column.
        regression: labels are scores (Pearson/Spearman), not classes.
    """

    name: str
    train: str
    dev: str
    test: str | None
    text_columns: tuple[str, ...]
    label_column: str
    regression: bool = False

    def __post_init__(self):
        if not _TASK_NAME.fullmatch(self.name):
            raise TrimbertError(f"task name {self.name!r}: use letters, digits, '.', '_' and '-' "
                                f"(it names the result folders)")
        if len(self.text_columns) not in (1, 2):
            raise TrimbertError(f"task {self.name}: give one or two text columns (--text-column), "
                                f"got {len(self.text_columns)}: {', '.join(self.text_columns)}")
        if len(set(self.text_columns)) != len(self.text_columns):
            raise TrimbertError(f"task {self.name}: text column {self.text_columns[0]!r} given twice")
        if self.label_column in self.text_columns:
            raise TrimbertError(f"task {self.name}: column {self.label_column!r} is both a text and the label")

    def path(self, split: str) -> str:
        """The file of ``train``, ``validation`` or ``test``."""
        path = {"train": self.train, "validation": self.dev, "test": self.test}.get(split)
        if path is None:
            raise TrimbertError(f"task {self.name} has no split {split!r}; splits: "
                                f"{'train, validation, test' if self.test else 'train, validation'}")
        return path


@dataclasses.dataclass(frozen=True)
class Task:
    """One fine-tuning task.

    Args:
        name: our task name (TFDS config name for GLUE), e.g. ``"stsb"``.
        display_name: the GLUE name, e.g. ``"STS-B"``.
        text_features: TFDS feature names of the text(s), one or two.
        label_names: class names in label-index order; ``()`` for regression.
        tfds_name: TFDS dataset name, ``None`` for the embedded sentiment tasks.
        glue_folder: the task's folder inside a standard GLUE data folder.
        files: split -> layout of its TSV file in ``glue_folder``.
        submissions: test split -> GLUE submission file name.
        submission_labels: what a submission row holds: the class index, the
            class name, or the score.
        metrics: the metrics it reports on its evaluation splits and how they make its score
            (GLUE paper, Wang et al. 2019, Table 1, and its scoring rule).
        user_files: a user's own task: its files and columns; ``None`` for the built-in tasks.
    """

    name: str
    display_name: str
    text_features: tuple[str, ...]
    label_names: tuple[str, ...]
    tfds_name: str | None = None
    glue_folder: str | None = None
    files: dict[str, TsvLayout] = dataclasses.field(default_factory=dict)
    submissions: dict[str, str] = dataclasses.field(default_factory=dict)
    submission_labels: SubmissionLabels = "indices"
    metrics: TaskMetrics = ACCURACY
    user_files: TaskFiles | None = None

    @property
    def test_splits(self) -> tuple[str, ...]:
        """The test splits a run reads: GLUE's submitted ones, a user task's if it has a test file,
        else ``test`` (the sentiment tasks' labelled test sets)."""
        if self.user_files is not None:
            return ("test",) if self.user_files.test is not None else ()
        return tuple(self.submissions) or ("test",)

    @property
    def dev_splits(self) -> tuple[str, ...]:
        """The splits the task is evaluated (and seeds selected) on."""
        return tuple(split for split, _ in self.metrics.splits)

    def evaluate(self, split_predictions: Mapping[str, tuple[ArrayLike, ArrayLike]]) -> dict[str, float]:
        """Every dev metric and the score (:meth:`TaskMetrics.evaluate`)."""
        return self.metrics.evaluate(split_predictions, self.name)

    def evaluate_split(self, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
        """The metrics on one labelled split, e.g. a sentiment test set."""
        return self.metrics.evaluate_split(predictions, labels)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """Output units of the task head: classes, or 1 for a regression score."""
        return len(self.label_names) or 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_features) == 2

    @property
    def is_glue(self) -> bool:
        return self.tfds_name is not None


def _standard_files(text_columns: tuple[Column, ...], label_column: Column,
                    test_text_columns: tuple[Column, ...],
                    index_column: Column = "index") -> dict[str, TsvLayout]:
    """train.tsv / dev.tsv with a header and labels, test.tsv with a header and ids."""
    return {
        "train": TsvLayout("train.tsv", True, text_columns, label_column),
        "validation": TsvLayout("dev.tsv", True, text_columns, label_column),
        "test": TsvLayout("test.tsv", True, test_text_columns, None, index_column),
    }


def _mnli_files() -> dict[str, TsvLayout]:
    pair, label = ("sentence1", "sentence2"), "gold_label"
    return {
        "train": TsvLayout("train.tsv", True, pair, label),
        "validation_matched": TsvLayout("dev_matched.tsv", True, pair, label),
        "validation_mismatched": TsvLayout("dev_mismatched.tsv", True, pair, label),
        "test_matched": TsvLayout("test_matched.tsv", True, pair, None, "index"),
        "test_mismatched": TsvLayout("test_mismatched.tsv", True, pair, None, "index"),
    }


def _sentiment_task(name: str) -> Task:
    return Task(name=name, display_name=name, text_features=("sentence",),
                label_names=("negative", "positive"))


_ENTAILMENT = ("entailment", "not_entailment")

TASKS: dict[str, Task] = {task.name: task for task in (
    # CoLA's train/dev files alone have no header: source, label, original label, sentence.
    Task("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), "glue/cola", "CoLA",
         files={"train": TsvLayout("train.tsv", False, (3,), 1),
                "validation": TsvLayout("dev.tsv", False, (3,), 1),
                "test": TsvLayout("test.tsv", True, ("sentence",), None, "index")},
         submissions={"test": "CoLA.tsv"}, metrics=TaskMetrics(metrics=("matthews",), score=("matthews",))),
    Task("sst2", "SST-2", ("sentence",), ("negative", "positive"), "glue/sst2", "SST-2",
         files=_standard_files(("sentence",), "label", ("sentence",)),
         submissions={"test": "SST-2.tsv"}),
    Task("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "glue/mrpc", "MRPC",
         files=_standard_files(("#1 String", "#2 String"), "Quality", ("#1 String", "#2 String")),
         submissions={"test": "MRPC.tsv"}, metrics=TaskMetrics(metrics=("f1", "accuracy"), score=("f1", "accuracy"))),
    Task("stsb", "STS-B", ("sentence1", "sentence2"), (), "glue/stsb", "STS-B",
         files=_standard_files(("sentence1", "sentence2"), "score", ("sentence1", "sentence2")),
         submissions={"test": "STS-B.tsv"}, submission_labels="scores",
         metrics=TaskMetrics(metrics=("pearson", "spearman"), score=("pearson", "spearman"))),
    Task("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), "glue/qqp", "QQP",
         files=_standard_files(("question1", "question2"), "is_duplicate", ("question1", "question2"), "id"),
         submissions={"test": "QQP.tsv"}, metrics=TaskMetrics(metrics=("accuracy", "f1"), score=("accuracy", "f1"))),
    Task("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
         "glue/mnli", "MNLI", files=_mnli_files(),
         submissions={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
         submission_labels="names",
         metrics=TaskMetrics(metrics=("accuracy",), score=("accuracy",),
                             splits=(("validation_matched", "matched"), ("validation_mismatched", "mismatched")))),
    Task("qnli", "QNLI", ("question", "sentence"), _ENTAILMENT, "glue/qnli", "QNLI",
         files=_standard_files(("question", "sentence"), "label", ("question", "sentence")),
         submissions={"test": "QNLI.tsv"}, submission_labels="names"),
    Task("rte", "RTE", ("sentence1", "sentence2"), _ENTAILMENT, "glue/rte", "RTE",
         files=_standard_files(("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
         submissions={"test": "RTE.tsv"}, submission_labels="names"),
    # WNLI's files hold 0/1 (1 = entailment), so its class order differs from RTE's.
    Task("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "glue/wnli", "WNLI",
         files=_standard_files(("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
         submissions={"test": "WNLI.tsv"}),
    *(_sentiment_task(name) for name in corpora.SENTIMENT_TASKS),
)}

GLUE_TASKS = tuple(name for name, task in TASKS.items() if task.is_glue)
SENTIMENT_TASKS = tuple(name for name, task in TASKS.items() if not task.is_glue)

# Names users may type: ours, the GLUE spelling, any case, with or without - and _.
_ALIASES = {alias: task.name for task in TASKS.values()
            for alias in (task.name.lower(), task.display_name.lower(),
                          task.display_name.lower().replace("-", ""))}


def get_task(name: str) -> Task:
    """The task called ``name`` (``"SST-2"``, ``"sst2"`` and ``"sst-2"`` all work)."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise TrimbertError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[_ALIASES[key]]


GROUPS = {"glue": GLUE_TASKS, "sentiment": SENTIMENT_TASKS}


def is_known(name: str) -> bool:
    """Whether ``name`` is a built-in task (in any spelling :func:`get_task` takes) or a group name."""
    key = name.strip().lower()
    return key in _ALIASES or key in GROUPS


def task_of(task: Task | str) -> Task:
    """A :class:`Task` as it is, a name through :func:`get_task`."""
    return get_task(task) if isinstance(task, str) else task


def split_task_list(text: str) -> list[str]:
    """``"cola, glue, mine"`` -> the names in order, groups expanded (not checked against the table)."""
    names = [name.strip() for part in text.split(",") if part.strip()
             for name in GROUPS.get(part.strip().lower(), (part,))]
    if not names:
        raise TrimbertError("no task given")
    return names


def parse_task_list(text: str) -> list[Task]:
    """``"cola,sst2"`` -> their tasks; ``"glue"`` and ``"sentiment"`` name the whole groups."""
    return [get_task(name) for name in split_task_list(text)]


# ---------------------------------------------------------------------------
# Submission files
# ---------------------------------------------------------------------------


def submission_label(task: Task, prediction: int | float) -> str:
    """How GLUE's server wants one prediction written: index, class name or score."""
    if task.submission_labels == "scores":
        return f"{float(prediction):.4f}"
    index = int(prediction)
    if not 0 <= index < task.num_labels:
        raise TrimbertError(
            f"{task.display_name}: predicted class {prediction} outside 0..{task.num_labels - 1}")
    return task.label_names[index] if task.submission_labels == "names" else str(index)


def write_submission(task: Task, split: str, indices: Sequence[int], predictions: Sequence[int | float],
                     out_dir: str | pathlib.Path) -> pathlib.Path | str:
    """Writes ``index<TAB>prediction`` rows under the header GLUE expects; returns the file.

    Args:
        task: a GLUE task.
        split: a test split with a submission file (MNLI: ``test_matched`` -> ``MNLI-m.tsv``).
        indices: each example's ``idx``, as read from the test file.
        predictions: class indices, or scores for STS-B, aligned with ``indices``.
        out_dir: folder of the submission (zip its files for the GLUE server); local or a URL.
    """
    if split not in task.submissions:
        raise TrimbertError(f"{task.display_name} has no submission for split {split!r}; "
                            f"submitted splits: {', '.join(task.submissions) or 'none'}")
    if len(indices) != len(predictions):
        raise TrimbertError(
            f"{task.display_name}: {len(predictions)} predictions for {len(indices)} examples")
    rows = [f"{int(index)}\t{submission_label(task, prediction)}\n"
            for index, prediction in zip(indices, predictions, strict=True)]
    import storage

    path = storage.join(storage.makedirs(out_dir), task.submissions[split])
    storage.write_text(path, "index\tprediction\n" + "".join(rows))
    return path if storage.is_url(path) else pathlib.Path(path)
