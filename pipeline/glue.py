"""Fine-tuning tasks: the nine GLUE tasks and the four embedded sentiment tasks.

One table (``TASKS``) says, per task, what its examples look like (one text or
a pair, classes or a regression score), where they come from (TensorFlow
Datasets ``glue/*``, the standard GLUE data folder's TSV files, or the
embedded sentiment asset) and how test predictions are submitted to the GLUE
server. Every source yields the same plain :class:`Example` list, so the
fine-tuning code has one path for all of them.

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
from collections.abc import Sequence
from typing import Literal

from configs.errors import TrimbertError
from pipeline import assets

Column = int | str  # a 0-based position, or a header name looked up in the file's first line
SubmissionLabels = Literal["indices", "names", "scores"]


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
        dev_splits: the splits the task is evaluated (and seeds selected) on.
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
    dev_splits: tuple[str, ...] = ("validation",)

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
         submissions={"test": "CoLA.tsv"}),
    Task("sst2", "SST-2", ("sentence",), ("negative", "positive"), "glue/sst2", "SST-2",
         files=_standard_files(("sentence",), "label", ("sentence",)),
         submissions={"test": "SST-2.tsv"}),
    Task("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "glue/mrpc", "MRPC",
         files=_standard_files(("#1 String", "#2 String"), "Quality", ("#1 String", "#2 String")),
         submissions={"test": "MRPC.tsv"}),
    Task("stsb", "STS-B", ("sentence1", "sentence2"), (), "glue/stsb", "STS-B",
         files=_standard_files(("sentence1", "sentence2"), "score", ("sentence1", "sentence2")),
         submissions={"test": "STS-B.tsv"}, submission_labels="scores"),
    Task("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), "glue/qqp", "QQP",
         files=_standard_files(("question1", "question2"), "is_duplicate", ("question1", "question2"), "id"),
         submissions={"test": "QQP.tsv"}),
    Task("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
         "glue/mnli", "MNLI", files=_mnli_files(),
         submissions={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
         submission_labels="names", dev_splits=("validation_matched", "validation_mismatched")),
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
    *(_sentiment_task(name) for name in assets.SENTIMENT_TASKS),
)}

GLUE_TASKS = tuple(name for name, task in TASKS.items() if task.is_glue)
SENTIMENT_TASKS = tuple(name for name, task in TASKS.items() if not task.is_glue)
# The embedded sentiment asset's file for each split name.
SENTIMENT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

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


def parse_task_list(text: str) -> list[Task]:
    """``"cola,sst2"`` -> their tasks; ``"glue"`` and ``"sentiment"`` name the whole groups."""
    groups = {"glue": GLUE_TASKS, "sentiment": SENTIMENT_TASKS}
    names = [name for part in text.split(",") if part.strip()
             for name in groups.get(part.strip().lower(), (part,))]
    if not names:
        raise TrimbertError("no task given")
    return [get_task(name) for name in names]


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_examples(task: Task | str, split: str, glue_dir: pathlib.Path | None = None,
                  tfds_data_dir: pathlib.Path | None = None,
                  sentiment_dir: pathlib.Path | None = None) -> list[Example]:
    """Examples of one split, from whichever source the task and arguments name.

    Sentiment tasks read the embedded asset; GLUE tasks read ``glue_dir`` when
    given, else TensorFlow Datasets (downloading into ``tfds_data_dir`` if needed).

    Args:
        task: a :class:`Task` or its name.
        split: ``train``, ``validation``, ``test`` (MNLI: ``validation_matched`` ...).
        glue_dir: a standard GLUE data folder (``CoLA/train.tsv``, ``MNLI/dev_matched.tsv`` ...).
        tfds_data_dir: TensorFlow Datasets data folder; ``None`` for its default.
        sentiment_dir: the sentiment asset folder; ``None`` fetches it from the cache.
    """
    task = get_task(task) if isinstance(task, str) else task
    if not task.is_glue:
        return read_sentiment(task, split, sentiment_dir)
    if glue_dir is not None:
        return read_glue_folder(task, split, pathlib.Path(glue_dir))
    return read_tfds(task, split, tfds_data_dir)


def read_sentiment(task: Task, split: str, sentiment_dir: pathlib.Path | None = None) -> list[Example]:
    """One split of an embedded sentiment task (``sentence<TAB>label`` files).

    Args:
        task: a sentiment task.
        split: ``train``, ``validation`` or ``test`` (all labelled).
        sentiment_dir: folder holding ``<task>/{train,dev,test}.tsv``; default: the asset cache.
    """
    _check_split(task, split, SENTIMENT_FILES)
    folder = pathlib.Path(sentiment_dir) if sentiment_dir is not None else assets.ensure("sentiment")
    rows = assets.read_tsv(folder / task.name / SENTIMENT_FILES[split])
    return [Example(sentence, None, label, index) for index, (sentence, label) in enumerate(rows)]


def read_glue_folder(task: Task, split: str, glue_dir: pathlib.Path) -> list[Example]:
    """One split from a standard GLUE data folder (as ``download_glue_data.py`` lays it out).

    Args:
        task: a GLUE task.
        split: a split name listed in ``task.files``.
        glue_dir: the folder holding ``CoLA/``, ``SST-2/``, ``MNLI/`` ...
    """
    _check_split(task, split, task.files)
    layout = task.files[split]
    path = pathlib.Path(glue_dir) / task.glue_folder / layout.filename
    if not path.is_file():
        raise TrimbertError(f"{task.display_name} {split}: {path} not found; --glue-dir must be a GLUE data "
                            f"folder holding {task.glue_folder}/{layout.filename}")
    examples = []
    with open(path, "rb") as handle:  # split on \n only: some sentences hold a bare \r
        lines = (raw.decode("utf-8").rstrip("\r\n") for raw in handle)
        numbered = ((number, line) for number, line in enumerate(lines, start=1) if line.strip())
        header: list[str] | None = None
        if layout.header:
            header_number, header_line = next(numbered, (1, ""))
            header = header_line.lstrip("\ufeff").split("\t")
        positions = _resolve_columns(layout, header, path)
        for number, line in numbered:
            examples.append(_parse_row(task, layout, positions, line, f"{path} line {number}", len(examples)))
    return examples


def read_tfds(task: Task, split: str, data_dir: pathlib.Path | None = None) -> list[Example]:
    """One split of TensorFlow Datasets' ``glue/<task>`` (downloaded on first use).

    Args:
        task: a GLUE task.
        split: a TFDS split name of the task.
        data_dir: TFDS data folder; ``None`` for TFDS's default (``~/tensorflow_datasets``).
    """
    import tensorflow_datasets as tfds

    _check_split(task, split, task.files)
    try:
        dataset = tfds.load(task.tfds_name, split=split, data_dir=None if data_dir is None else str(data_dir),
                            shuffle_files=False)
    except Exception as error:  # network, checksum and missing-data errors all mean "not reachable"
        raise TrimbertError(f"could not load {task.tfds_name} split {split} from TensorFlow Datasets "
                            f"({type(error).__name__}: {error}); pass --glue-dir with a local GLUE "
                            f"data folder instead") from error
    examples = []
    for row in tfds.as_numpy(dataset):
        texts = [row[feature].decode("utf-8") for feature in task.text_features]
        raw_label = row["label"].item()
        label = None if raw_label == -1 else (float(raw_label) if task.is_regression else int(raw_label))
        examples.append(Example(texts[0], texts[1] if task.is_pair else None, label, int(row["idx"])))
    examples.sort(key=lambda example: example.idx)  # TFDS shards interleave; make the order stable
    return examples


def _check_split(task: Task, split: str, known: dict) -> None:
    if split not in known:
        raise TrimbertError(f"{task.display_name} has no split {split!r}; splits: {', '.join(known)}")


def _resolve_columns(layout: TsvLayout, header: list[str] | None, path: pathlib.Path) -> dict[str, object]:
    """Column names -> positions, using the header; errors name the file and the header seen."""

    def position(column: Column | None) -> int | None:
        if column is None or isinstance(column, int):
            return column
        if header is None or column not in header:
            raise TrimbertError(f"{path} line 1: header has no column {column!r} "
                                f"(found: {', '.join(header or [])})")
        return header.index(column)

    return {"text": tuple(position(column) for column in layout.text_columns),
            "label": position(layout.label_column), "index": position(layout.index_column)}


def _parse_row(task: Task, layout: TsvLayout, positions: dict, line: str, where: str, row: int) -> Example:
    fields = line.split("\t")
    used = [p for p in (*positions["text"], positions["label"], positions["index"]) if p is not None]
    if max(used) >= len(fields):
        raise TrimbertError(f"{where}: expected at least {max(used) + 1} tab-separated fields for "
                            f"{task.display_name} {layout.filename}, got {len(fields)}: {line[:80]!r}")
    texts = [fields[p] for p in positions["text"]]
    label = None if positions["label"] is None else _parse_label(task, fields[positions["label"]], where)
    idx = row
    if positions["index"] is not None:
        try:
            idx = int(fields[positions["index"]])
        except ValueError as error:
            raise TrimbertError(f"{where}: index {fields[positions['index']]!r} is not an integer") from error
    return Example(texts[0], texts[1] if len(texts) == 2 else None, label, idx)


def _parse_label(task: Task, text: str, where: str) -> int | float:
    """A class name or index (checked against the task's classes), or a float score."""
    text = text.strip()
    try:
        if task.is_regression:
            return float(text)
        if text in task.label_names:
            return task.label_names.index(text)
        value = int(text)
        if 0 <= value < task.num_labels:
            return value
    except ValueError:
        pass
    expected = "a number" if task.is_regression else " or ".join(
        [*task.label_names, *(str(i) for i in range(task.num_labels))])
    raise TrimbertError(f"{where}: label {text!r} is not {expected}")


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
                     out_dir: pathlib.Path) -> pathlib.Path:
    """Writes ``index<TAB>prediction`` rows under the header GLUE expects; returns the file.

    Args:
        task: a GLUE task.
        split: a test split with a submission file (MNLI: ``test_matched`` -> ``MNLI-m.tsv``).
        indices: each example's ``idx``, as read from the test file.
        predictions: class indices, or scores for STS-B, aligned with ``indices``.
        out_dir: folder of the submission (zip its files for the GLUE server).
    """
    if split not in task.submissions:
        raise TrimbertError(f"{task.display_name} has no submission for split {split!r}; "
                            f"submitted splits: {', '.join(task.submissions) or 'none'}")
    if len(indices) != len(predictions):
        raise TrimbertError(
            f"{task.display_name}: {len(predictions)} predictions for {len(indices)} examples")
    rows = [f"{int(index)}\t{submission_label(task, prediction)}\n"
            for index, prediction in zip(indices, predictions, strict=True)]
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / task.submissions[split]
    path.write_text("index\tprediction\n" + "".join(rows), encoding="utf-8")
    return path
