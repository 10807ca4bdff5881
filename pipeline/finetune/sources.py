"""Where a task's examples come from: the embedded sentiment asset, a GLUE data folder, TensorFlow Datasets,
or a user's own files (:mod:`pipeline.finetune.task_files`).

Every source yields the same plain :class:`pipeline.finetune.tasks.Example` list with TFDS split
names and labels as indices of ``Task.label_names``, so fine-tuning has one path for all of them.
"""

from __future__ import annotations

import pathlib

import storage
from configs.errors import TrimbertError
from pipeline.assets import cache as assets
from pipeline.assets import corpora
from pipeline.finetune import task_files
from pipeline.finetune.tasks import Column, Example, Task, TsvLayout, get_task

# The embedded sentiment asset's file for each split name.
SENTIMENT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def load_examples(task: Task | str, split: str, glue_dir: str | pathlib.Path | None = None,
                  tfds_data_dir: str | pathlib.Path | None = None,
                  sentiment_dir: pathlib.Path | None = None) -> list[Example]:
    """Examples of one split, from whichever source the task and arguments name.

    A user's task reads its files; sentiment tasks read the embedded asset; GLUE tasks read ``glue_dir``
    when given, else TensorFlow Datasets (downloading into ``tfds_data_dir`` if needed).

    Args:
        task: a :class:`Task` or its name.
        split: ``train``, ``validation``, ``test`` (MNLI: ``validation_matched`` ...).
        glue_dir: a standard GLUE data folder (``CoLA/train.tsv``, ``MNLI/dev_matched.tsv`` ...).
        tfds_data_dir: TensorFlow Datasets data folder; ``None`` for its default.
        sentiment_dir: the sentiment asset folder; ``None`` fetches it from the cache.
    """
    task = get_task(task) if isinstance(task, str) else task
    if task.user_files is not None:
        return task_files.read_examples(task, split)
    if not task.is_glue:
        return read_sentiment(task, split, sentiment_dir)
    if glue_dir is not None:
        return read_glue_folder(task, split, glue_dir)
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
    path = folder / task.name / SENTIMENT_FILES[split]
    rows = corpora.read_tsv(path)
    return _non_empty([Example(sentence, None, label, index) for index, (sentence, label) in enumerate(rows)],
                      task, split, path)


def read_glue_folder(task: Task, split: str, glue_dir: str | pathlib.Path) -> list[Example]:
    """One split from a standard GLUE data folder (as ``download_glue_data.py`` lays it out).

    Args:
        task: a GLUE task.
        split: a split name listed in ``task.files``.
        glue_dir: the folder holding ``CoLA/``, ``SST-2/``, ``MNLI/`` ... (local or a URL)
    """
    _check_split(task, split, task.files)
    layout = task.files[split]
    path = storage.join(glue_dir, task.glue_folder, layout.filename)
    if not storage.isfile(path):
        raise TrimbertError(f"{task.display_name} {split}: {path} not found; --glue-dir must be a GLUE data "
                            f"folder holding {task.glue_folder}/{layout.filename}")
    examples = []
    # Split on \n only: some sentences hold a bare \r.
    lines = (raw.decode("utf-8").rstrip("\r\n") for raw in storage.read_bytes(path).split(b"\n"))
    numbered = ((number, line) for number, line in enumerate(lines, start=1) if line.strip())
    header: list[str] | None = None
    if layout.header:
        header_number, header_line = next(numbered, (1, ""))
        header = header_line.lstrip("\ufeff").split("\t")
    positions = _resolve_columns(layout, header, path)
    for number, line in numbered:
        examples.append(_parse_row(task, layout, positions, line, f"{path} line {number}", len(examples)))
    return _non_empty(examples, task, split, path)


def read_tfds(task: Task, split: str, data_dir: str | pathlib.Path | None = None) -> list[Example]:
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
    return _non_empty(examples, task, split, f"TensorFlow Datasets {task.tfds_name}")


def _non_empty(examples: list[Example], task: Task, split: str, source) -> list[Example]:
    """The examples, or an error naming where they were read: an empty split cannot train or score."""
    if not examples:
        raise TrimbertError(f"{task.display_name} {split}: {source} holds no examples")
    return examples


def _check_split(task: Task, split: str, known: dict) -> None:
    if split not in known:
        raise TrimbertError(f"{task.display_name} has no split {split!r}; splits: {', '.join(known)}")


def _resolve_columns(layout: TsvLayout, header: list[str] | None, path: str) -> dict[str, object]:
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
