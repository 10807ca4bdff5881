"""Normalising text to match the vocabulary, and splitting lines into sentences.

:func:`normalize_line` (Google BERT's normalisation before WordPiece) lives in
``beam_jobs.wordpiece`` beside the tokenizer, because fine-tuning applies it too.
"""

from __future__ import annotations

import re

import apache_beam as beam

from beam_jobs.records import Document
from beam_jobs.wordpiece import normalize_line

# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) before whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<![A-Z]\.)([\"')\]]*)\s+(?=\S)")
MIN_SENTENCE_CHARS = 12


def split_sentences(line: str) -> list[str]:
    """Splits a paragraph line at sentence ends; fragments shorter than 12 characters stay joined.

    Lines that already hold one sentence (Google's format) come back unchanged.
    """
    pieces = _SENTENCE_END.sub(lambda match: match.group(1) + "\n", line).split("\n")
    sentences: list[str] = []
    for piece in pieces:
        if sentences and len(sentences[-1]) < MIN_SENTENCE_CHARS:
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


class NormalizeText(beam.PTransform):
    """PCollection[Document] -> PCollection[Document] with every line normalised (empty ones dropped).

    Args:
        lower_case: match an uncased vocabulary (lower-case, strip accents).
    """

    def __init__(self, lower_case: bool = True, label: str | None = None) -> None:
        super().__init__(label)
        self._lower_case = lower_case

    def expand(self, documents):
        lower_case = self._lower_case

        def normalize(document: Document) -> Document:
            lines = (normalize_line(line, lower_case) for line in document.lines)
            return document._replace(lines=tuple(line for line in lines if line))

        return documents | beam.Map(normalize)


class SplitSentences(beam.PTransform):
    """PCollection[Document] -> PCollection[Document] whose lines are single sentences."""

    def expand(self, documents):
        def split(document: Document) -> Document:
            return document._replace(
                lines=tuple(sentence for line in document.lines for sentence in split_sentences(line)))

        return documents | beam.Map(split)
