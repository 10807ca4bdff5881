"""Learning a WordPiece vocabulary: word counts in Beam, then tensorflow-text's learner.

Words are split the way FastWordpieceTokenizer splits them before WordPiece (whitespace, then each
punctuation character on its own), after the same normalisation, so the learned pieces match what
the tokenizer will look up. Only distinct words and their counts reach the driver.
"""

from __future__ import annotations

import collections
import logging
import posixpath
import re

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.features import SPECIAL_TOKENS
from beam_jobs.normalize import normalize_document
from beam_jobs.read import DocumentReader
from beam_jobs.records import ReadUnit, Stats, stable_hash
from beam_jobs.runners import running
from configs.errors import TrimbertError

_WORD = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)
# Google's vocabularies list these first; [PAD] must be id 0 because records are zero-padded.
RESERVED_TOKENS: tuple[str, ...] = SPECIAL_TOKENS
# Word counts are written in this many files, each word's file chosen by a stable hash.
COUNT_FILES = 16


def split_words(line: str) -> list[str]:
    """Whitespace- and punctuation-split words of a normalised line."""
    return _WORD.findall(line)


def unit_word_counts(unit: ReadUnit, reader: DocumentReader, lower_case: bool):
    """Yields (word, count) for each distinct word of one read unit, after normalisation.

    Counting a whole unit in one call sends one pair per distinct word, not per word, through the
    shuffle on every runner (Beam's Dask runner does no combiner lifting).
    """
    counts: collections.Counter = collections.Counter()
    for document in reader.documents(unit, Stats()):
        for line in normalize_document(document, lower_case).lines:
            counts.update(split_words(line))
    yield from counts.items()


class _WriteCountsFn(beam.DoFn):
    """Writes one bucket of (word, count) pairs; the file name is the bucket's, so a rerun overwrites it."""

    def __init__(self, counts_dir: str) -> None:
        self._counts_dir = counts_dir

    def process(self, element):
        bucket, pairs = element
        lines = "".join(f"{word}\t{count}\n" for word, count in sorted(pairs))
        with FileSystems.create(posixpath.join(self._counts_dir, f"counts-{bucket:05d}")) as handle:
            handle.write(lines.encode("utf-8"))
        yield bucket


def learn_vocabulary(pipeline_options, units, lower_case: bool, size: int, temporary_dir: str,
                     text_field: str = "text") -> list[str]:
    """Runs the counting pipeline, then the learner; returns the vocabulary (index = id).

    Args:
        pipeline_options: Beam ``PipelineOptions`` for the counting job.
        units: read units from :func:`beam_jobs.read.expand_inputs`.
        lower_case: normalisation used by the main job too.
        size: target vocabulary size (the learner stays within 5% below it).
        temporary_dir: scratch directory for the counts.
        text_field: JSON Lines key holding the text.
    """
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    counts_dir = posixpath.join(temporary_dir, "word_counts")
    reader = DocumentReader(text_field, log_empty_files=False)
    with running(pipeline_options) as pipeline:
        _ = (pipeline
             | "Units" >> beam.Create(units)
             | "ReshuffleUnits" >> beam.Reshuffle()
             | "CountUnits" >> beam.FlatMap(unit_word_counts, reader, lower_case)
             | "SumCounts" >> beam.CombinePerKey(sum)
             | "ByBucket" >> beam.Map(lambda pair: (stable_hash(pair[0]) % COUNT_FILES, pair))
             | "GroupByBucket" >> beam.GroupByKey()
             | "WriteCounts" >> beam.ParDo(_WriteCountsFn(counts_dir)))
    counts: dict[str, int] = {}
    for match in FileSystems.match([posixpath.join(counts_dir, "counts-*")])[0].metadata_list:
        with FileSystems.open(match.path) as handle:
            for line in handle.read().decode("utf-8").splitlines():
                word, _, count = line.rpartition("\t")
                counts[word] = int(count)
    if not counts:  # the learner would fail with a bare ValueError on no words at all
        raise TrimbertError(f"--learn-vocab: the inputs hold no words to learn a vocabulary from "
                            f"({', '.join(sorted({unit.source for unit in units}))}); nothing written")
    logging.info("preprocess: learning a %d-token vocabulary from %d distinct words", size, len(counts))
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocabulary = learner.learn(ordered, vocab_size=size, reserved_tokens=list(RESERVED_TOKENS),
                               lower_thresh=1)
    return list(vocabulary)
