"""Text -> WordPiece ids, the one tokenizer of pre-training and fine-tuning.

The Beam job (``beam_jobs.tokenize``) and fine-tuning (``pipeline.finetune.data``) both
normalise with :func:`normalize_line` and split words and pieces with the FastWordpieceTokenizer
of :func:`build_tokenizer`, so a text gets the same ids in both stages. This module does not
import Apache Beam, so fine-tuning can use it without loading Beam.

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
from collections.abc import Sequence

import numpy as np

# The ASCII fast path: tab, LF, VT, FF and CR become spaces, the other control characters are dropped.
ASCII_TABLE = {code: " " for code in (9, 10, 11, 12, 13)}
ASCII_TABLE.update({code: None for code in [*range(0, 9), *range(14, 32), 127]})

# CJK ideograph blocks, as Google's tokenizer lists them.
CJK_IDEOGRAPHS = re.compile(
    "([\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f"
    "\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f])")


def non_ascii_table() -> dict[int, str | None]:
    """The other path's ``str.translate`` table: NUL, U+FFFD and Cc/Cf other than tab, LF and CR dropped (VT and FF
    too, unlike the ASCII path), Zs and tab, LF and CR to a space; built from this Python's Unicode tables."""
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
        line = line.translate(ASCII_TABLE)
        return (line.lower() if lower_case else line).strip()
    if _TABLE is None:
        _TABLE = non_ascii_table()
    line = line.translate(_TABLE)
    if lower_case:
        line = unicodedata.normalize("NFD", line.lower())
        line = "".join(char for char in line if unicodedata.category(char) != "Mn")
    else:
        line = unicodedata.normalize("NFC", line)
    return CJK_IDEOGRAPHS.sub(r" \1 ", line).strip()


def build_tokenizer(tokens: list[str]):
    """A FastWordpieceTokenizer doing BERT's whitespace/punctuation split and WordPiece in one op."""
    import tensorflow as tf
    import tensorflow_text

    return tensorflow_text.FastWordpieceTokenizer(
        vocab=tokens, suffix_indicator="##", unknown_token="[UNK]", token_out_type=tf.int64,
        no_pretokenization=False, support_detokenization=False)


def tokenize_normalized(tokenizer, lines: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """WordPiece ids of already normalised lines, in one TensorFlow call.

    Args:
        tokenizer: from :func:`build_tokenizer`.
        lines: normalised text (:func:`normalize_line`), one sequence per string.

    Returns:
        The ids of every line end to end (int64 [total]) and the row splits: line ``i`` is
        ``ids[splits[i]:splits[i + 1]]``.
    """
    if not lines:
        return np.zeros([0], dtype=np.int64), [0]
    ragged = tokenizer.tokenize(list(lines))
    return ragged.flat_values.numpy(), ragged.row_splits.numpy().tolist()


def encode_texts(tokenizer, texts: Sequence[str], lower_case: bool) -> list[list[int]]:
    """Raw texts -> WordPiece ids per text (no special tokens), as pre-training tokenizes them.

    Args:
        tokenizer: from :func:`build_tokenizer`.
        texts: raw text, one sequence per string.
        lower_case: the vocabulary is uncased (see :func:`normalize_line`).
    """
    ids, splits = tokenize_normalized(tokenizer, [normalize_line(text, lower_case) for text in texts])
    ids = ids.tolist()
    return [ids[splits[row]:splits[row + 1]] for row in range(len(texts))]
