"""The ``bert`` random-document pool, sampled and written inside the job's one pipeline.

    units -> read + hash -> SampleRandomDocuments -> + an empty marker -> GroupByKey
      -> tokenize and write the pool file, then release one key per unit
    units keyed by index + released keys -> CoGroupByKey -> the units, now after the pool

The units reach the heavy step only through the join, so no unit is processed before the pool file
is complete, on any runner: the Dask runner included (it runs only the last step's ancestors, and
the join makes the pool one of them). The marker makes the write happen even for an input without
documents (an empty pool). The units keep the partitions of their ``beam.Create`` on Dask (one
each), so they still spread over the workers. Writing the pool is deterministic (sorted spans,
the same bytes), so a step a runner repeats rewrites the same file.

The pool is tokenized by the same worker processes that build the instances, which load
TensorFlow anyway: no process of its own, no pipeline of its own.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.instances import SampleRandomDocuments
from beam_jobs.normalize import normalize_document, split_document
from beam_jobs.read import DocumentReader
from beam_jobs.records import Document, ReadUnit, Stats, TokenizedDocument, held_out
from beam_jobs.tokenize import BatchTokenizer
from beam_jobs.write import write_json


class UnitsAfterPool(beam.PTransform):
    """PCollection[ReadUnit] -> the same units, released once the pool file at ``path`` is written.

    Args:
        units: every read unit of the job (their count is how many keys are released).
        tokens: the vocabulary.
        lower_case: the job's lower-casing.
        seed: the job seed.
        text_field: JSON Lines / TFDS key holding the text.
        path: where the pool file goes (:func:`pool_file`).
        heldout_fraction: documents held out of training (``records.held_out``) are not sampled, so
            no training instance takes a segment from one.
    """

    def __init__(self, units: Sequence[ReadUnit], tokens: list[str], lower_case: bool, seed: int,
                 text_field: str, path: str, heldout_fraction: float = 0.0, label: str | None = None) -> None:
        super().__init__(label)
        self._count, self._tokens, self._lower_case = len(units), tokens, lower_case
        self._seed, self._text_field, self._path = seed, text_field, path
        self._heldout_fraction = heldout_fraction

    def expand(self, units):
        reader = DocumentReader(self._text_field, log_empty_files=False)
        count, tokens, lower_case, path = self._count, self._tokens, self._lower_case, self._path
        seed, fraction = self._seed, self._heldout_fraction
        samples = (units
                   | "ReshuffleForPool" >> beam.Reshuffle()
                   | "ReadForPool" >> beam.FlatMap(lambda unit: reader.documents(unit, Stats()))
                   | "TrainingOnly" >> beam.Filter(lambda document: not held_out(document.digest, seed, fraction))
                   | "SamplePool" >> SampleRandomDocuments(self._seed))
        marker = units.pipeline | "EmptyPool" >> beam.Create([[]])

        def write_and_release(_, sampled):
            tokenize_and_write_pool([span for sample in sampled for span in sample], tokens, lower_case, path)
            return ((index, None) for index in range(count))

        released = ((marker, samples)
                    | "FlattenPool" >> beam.Flatten()
                    | "OnePool" >> beam.Map(lambda sample: (None, sample))
                    | "GatherPool" >> beam.GroupByKey()
                    | "WritePool" >> beam.FlatMapTuple(write_and_release))
        keyed = units | "KeyUnits" >> beam.Map(lambda unit: (unit.index, unit))
        return ((keyed, released)
                | "JoinPool" >> beam.CoGroupByKey()
                | "Released" >> beam.FlatMapTuple(lambda _, joined: joined[0]))


def tokenize_and_write_pool(spans: list[Document], tokens: list[str], lower_case: bool, path: str) -> str:
    """Normalises, splits and tokenizes the pool's text spans as the main pass does its documents,
    and writes them to ``path`` (JSON); returns the path."""
    tokenizer = BatchTokenizer(tokens)
    stats = Stats()
    tokenized: list[TokenizedDocument] = []
    for span in sorted(spans, key=lambda document: document.digest):
        tokenized += tokenizer.add(split_document(normalize_document(span, lower_case)), stats)
    tokenized += tokenizer.flush(stats)
    write_json(path, [document._asdict() for document in tokenized])
    return path


def read_pool(path: str) -> list[TokenizedDocument]:
    """The pool :func:`tokenize_and_write_pool` wrote."""
    with FileSystems.open(path) as handle:
        records = json.loads(handle.read().decode("utf-8"))
    return [TokenizedDocument(record["unit"], record["ordinal"], record["digest"],
                              tuple(tuple(sentence) for sentence in record["sentences"])) for record in records]


def pool_file(scratch: str) -> str:
    """Where the pool of a job with this scratch directory is written."""
    return posixpath.join(scratch, "pool.json")
