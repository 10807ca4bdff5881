"""Learning a WordPiece vocabulary: word counts in Beam, then tensorflow-text's learner.

Words are split the way FastWordpieceTokenizer splits them before WordPiece (whitespace, then each
punctuation character on its own), after the same normalisation, so the learned pieces match what
the tokenizer will look up. Only distinct words and their counts reach the driver.
"""

from __future__ import annotations

import logging
import posixpath
import re

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.features import SPECIAL_TOKENS
from beam_jobs.normalize import NormalizeText
from beam_jobs.read import ReadDocuments
from beam_jobs.records import Document
from beam_jobs.runners import running

_WORD = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)
# Google's vocabularies list these first; [PAD] must be id 0 because records are zero-padded.
RESERVED_TOKENS: tuple[str, ...] = SPECIAL_TOKENS


def split_words(line: str) -> list[str]:
    """Whitespace- and punctuation-split words of a normalised line."""
    return _WORD.findall(line)


class CountWords(beam.PTransform):
    """PCollection[Document] (normalised) -> PCollection[(word, count)]."""

    def expand(self, documents):
        def words(document: Document):
            for line in document.lines:
                yield from split_words(line)

        return (documents
                | "Words" >> beam.FlatMap(words)
                | "Count" >> beam.combiners.Count.PerElement())


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

    counts_prefix = posixpath.join(temporary_dir, "word_counts", "counts")
    with running(pipeline_options) as pipeline:
        read = (pipeline
                | "Units" >> beam.Create(units)
                | "ReshuffleUnits" >> beam.Reshuffle()
                | "Read" >> ReadDocuments(text_field))
        _ = (read.documents
             | "Normalize" >> NormalizeText(lower_case)
             | "CountWords" >> CountWords()
             | "Format" >> beam.MapTuple(lambda word, count: f"{word}\t{count}")
             | "WriteCounts" >> beam.io.WriteToText(counts_prefix, shard_name_template="-SSSSS-of-NNNNN"))
    counts: dict[str, int] = {}
    for match in FileSystems.match([counts_prefix + "-*"])[0].metadata_list:
        with FileSystems.open(match.path) as handle:
            for line in handle.read().decode("utf-8").splitlines():
                word, _, count = line.rpartition("\t")
                counts[word] = int(count)
    logging.info("preprocess: learning a %d-token vocabulary from %d distinct words", size, len(counts))
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocabulary = learner.learn(ordered, vocab_size=size, reserved_tokens=list(RESERVED_TOKENS),
                               lower_thresh=1)
    return list(vocabulary)
