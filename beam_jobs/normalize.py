"""Normalising text to match the vocabulary, and splitting lines into sentences.

:func:`normalize_line` (Google BERT's normalisation before WordPiece) lives in
``beam_jobs.wordpiece`` beside the tokenizer, because fine-tuning applies it too.
"""

from __future__ import annotations

import re

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


def normalize_document(document: Document, lower_case: bool) -> Document:
    """The document with every line normalised and empty lines dropped."""
    lines = (normalize_line(line, lower_case) for line in document.lines)
    return document._replace(lines=tuple(line for line in lines if line))


def split_document(document: Document) -> Document:
    """The document with one sentence per line."""
    return document._replace(
        lines=tuple(sentence for line in document.lines for sentence in split_sentences(line)))
