"""Normalising text to match the vocabulary, and splitting lines into sentences.

Normalisation follows what Google's BERT tokenizer does before WordPiece, so ids match theirs:
whitespace control characters become spaces, other control/format characters, NUL and U+FFFD are
dropped; for an uncased vocabulary text is lower-cased, decomposed (NFD) and stripped of combining
accents ("Café" -> "cafe"); for a cased one it is NFC-composed; CJK ideographs are spaced out so
each becomes its own word. ASCII lines (most of an English corpus) take a fast path.
"""

from __future__ import annotations

import re
import sys
import unicodedata

from beam_jobs.records import Document

_ASCII_TABLE = {code: " " for code in (9, 10, 11, 12, 13)}
_ASCII_TABLE.update({code: None for code in [*range(0, 9), *range(14, 32), 127]})

# CJK ideograph blocks, as Google's tokenizer lists them.
_CJK = re.compile(
    "([\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f"
    "\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f])")

# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) before whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<![A-Z]\.)([\"')\]]*)\s+(?=\S)")
MIN_SENTENCE_CHARS = 12


def _non_ascii_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if code in (0, 0xFFFD) or (category in ("Cc", "Cf") and code not in (9, 10, 13)):
            table[code] = None
        elif category == "Zs" or code in (9, 10, 13):
            table[code] = " "
    return table


_TABLE: dict[int, str | None] | None = None


def normalize_line(line: str, lower_case: bool) -> str:
    """One line normalised as Google's BERT BasicTokenizer does before splitting words.

    Args:
        line: raw text (one line, any Unicode).
        lower_case: lower-case and strip accents (uncased vocabulary) instead of NFC.
    """
    global _TABLE
    if line.isascii():
        line = line.translate(_ASCII_TABLE)
        return (line.lower() if lower_case else line).strip()
    if _TABLE is None:
        _TABLE = _non_ascii_table()
    line = line.translate(_TABLE)
    if lower_case:
        line = unicodedata.normalize("NFD", line.lower())
        line = "".join(char for char in line if unicodedata.category(char) != "Mn")
    else:
        line = unicodedata.normalize("NFC", line)
    return _CJK.sub(r" \1 ", line).strip()


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
