"""Predictions of a kept model on a user's file: rows of texts -> WordPiece ids -> logits -> output rows.

A class model writes ``label`` (the most probable class's name) and ``probability_<name>`` per
class, the softmax of its logits; a regression model writes ``score``, its one output. Output rows
follow the input rows one for one, in input order.

The input (``pipeline.finetune.table_files``) is read in chunks of ``read_rows`` rows; each chunk
is tokenized, run in batches of ``batch_size`` sorted by length (least padding) and written before
the next is read, so memory holds one chunk whatever the file's size. The output is written to a
staging file renamed over the target at the end (``storage.staging_path``; on object storage a local
file copied in one write at the end): a run that fails or is killed leaves no complete-looking file.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

import storage
from configs.errors import TrimbertError
from pipeline.finetune import data, table_files
from pipeline.finetune.kept_model import KeptModel
from pipeline.finetune.tasks import Example

if TYPE_CHECKING:
    import keras

BATCH_SIZE = 32
READ_ROWS = 1024
PROGRESS_SECONDS = 5.0
OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The output rows of one chunk of input rows, in input order, and how many of its texts were cut."""

    rows: list[dict[str, str | float]]
    truncated: int


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a whole file's prediction did."""

    rows: int
    truncated: int
    seconds: float
    out: str


def output_columns(label_names: Sequence[str], regression: bool) -> list[str]:
    """``score``, or ``label`` and ``probability_<name>`` per class in class order."""
    return ["score"] if regression else ["label", *(f"probability_{name}" for name in label_names)]


def logits(classifier: keras.Model, encoded: data.EncodedExamples, batch_size: int) -> np.ndarray:
    """The classifier's logits [N, C] for every example, in the examples' order (batches run sorted by length)."""
    values = None
    for positions in data.inference_order(encoded.lengths, batch_size):
        batch = data.pad_batch(encoded, positions, regression=False)
        output = np.asarray(classifier.predict_on_batch(batch.inputs))  # [B, C]
        if values is None:
            values = np.zeros((len(encoded), output.shape[-1]), dtype=np.float32)
        values[batch.positions] = output
    return values


def softmax(values: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (shifted by the row's maximum, so large logits do not overflow)."""
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predict_texts(model: KeptModel, texts: Sequence[Sequence[str]], batch_size: int = BATCH_SIZE) -> Predictions:
    """Output rows for one chunk of inputs.

    Args:
        model: the kept model.
        texts: per input row, its one or two texts (as many as ``model.text_columns``).
        batch_size: rows per model call.
    """
    examples = [Example(row[0], row[1] if len(row) > 1 else None, None, index) for index, row in enumerate(texts)]
    encoded = model.tokenizer.encode(examples, model.seq_len, model.regression)
    outputs = logits(model.classifier, encoded, batch_size)
    if model.regression:
        return Predictions([{"score": float(value)} for value in outputs[:, 0]], encoded.truncated)
    names = output_columns(model.label_names, False)[1:]
    rows = []
    for probabilities in softmax(outputs.astype(np.float64)):
        rows.append({"label": model.label_names[int(np.argmax(probabilities))],
                     **{name: float(value) for name, value in zip(names, probabilities, strict=True)}})
    return Predictions(rows, encoded.truncated)


def text_columns(model: KeptModel, given: Sequence[str] | None) -> tuple[str, ...]:
    """The input columns to read: ``given`` (``--text-column``), else the model's own text columns."""
    if not given:
        return model.text_columns
    if len(given) != len(model.text_columns):
        raise TrimbertError(f"the model reads {len(model.text_columns)} text column(s) "
                            f"({', '.join(model.text_columns)}); --text-column named {len(given)}")
    return tuple(given)


def predict_file(model: KeptModel, path: str, columns: Sequence[str], batch_size: int = BATCH_SIZE,
                 read_rows: int = READ_ROWS) -> Iterator[Predictions]:
    """:func:`predict_texts` of each chunk of ``read_rows`` input rows, in file order.

    Raises:
        TrimbertError: a column is missing (naming the file and its columns), or a text is null
            (naming the row).
    """
    for chunk in table_files.iter_rows(path, columns, read_rows):
        yield predict_texts(model, [_texts(row, columns) for row in chunk], batch_size)


def _texts(row: table_files.Row, columns: Sequence[str]) -> tuple[str, ...]:
    texts = []
    for column, value in zip(columns, row.values, strict=True):
        if value is None:
            raise TrimbertError(f"{row.where}: column {column!r} is empty (null)")
        texts.append(value if isinstance(value, str) else str(value))
    return tuple(texts)


def output_format(path: str) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the output file's suffix."""
    for suffix, kind in OUTPUT_FORMATS.items():
        if str(path).lower().endswith(suffix):
            return kind
    raise TrimbertError(f"--out {path}: name the output .csv, .tsv or .jsonl")


def write_predictions(out: str, columns: Sequence[str], chunks: Iterator[Predictions],
                      log: Callable[[str], None] = print, progress_seconds: float = PROGRESS_SECONDS) -> Summary:
    """Writes every chunk's rows to ``out`` (its format from the suffix), whole or not at all.

    Args:
        out: the output file, local or a URL.
        columns: the output columns (:func:`output_columns`).
        chunks: the predictions, in input order.
        log: prints a progress line (rows done, rows per second) every ``progress_seconds``.
        progress_seconds: seconds between progress lines.
    """
    kind = output_format(out)
    remote = storage.is_url(out)
    with contextlib.ExitStack() as stack:
        if remote:  # object storage: a local file, copied in one write at the end
            staging = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), "predictions")
        else:
            storage.makedirs(storage.parent(out) or ".")
            staging = storage.staging_path(out)
        started = last_report = time.perf_counter()
        rows = truncated = 0
        try:
            with open(staging, "w", encoding="utf-8", newline="") as handle:
                write = _row_writer(handle, kind, columns)
                for chunk in chunks:
                    for row in chunk.rows:
                        write(row)
                    rows += len(chunk.rows)
                    truncated += chunk.truncated
                    now = time.perf_counter()
                    if now - last_report >= progress_seconds:
                        last_report = now
                        log(f"predict: {rows:,} rows, {rows / (now - started):,.1f} rows/s")
            if remote:
                storage.copy_file(staging, out)
            else:
                os.replace(staging, out)
        except BaseException:
            storage.remove_file(staging)
            raise
    return Summary(rows, truncated, time.perf_counter() - started, out)


def _row_writer(handle, kind: str, columns: Sequence[str]) -> Callable[[dict], None]:
    if kind == "jsonl":
        return lambda row: handle.write(json.dumps(row) + "\n")
    writer = csv.writer(handle, delimiter="\t" if kind == "tsv" else ",")
    writer.writerow(columns)
    return lambda row: writer.writerow([row[column] for column in columns])
