"""Turns a few lines of text into encoder inputs (for contribution pruning and parity checks)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from configs.errors import TrimbertError


def encode_texts(texts: Sequence[str], vocabulary_path: str | pathlib.Path, lowercase: bool = True,
                 sequence_length: int = 128) -> dict[str, np.ndarray]:
    """WordPiece-tokenises single sentences into ``[CLS] tokens [SEP]`` padded inputs.

    Args:
        texts: one sequence per string (empty strings are skipped).
        vocabulary_path: a BERT ``vocab.txt``.
        lowercase: lower-case before tokenising (uncased vocabularies).
        sequence_length: T, tokens per row including [CLS] and [SEP]; longer text is cut.

    Returns:
        ``token_ids``, ``segment_ids``, ``padding_mask``: int32 arrays [N, T].
    """
    import keras_hub

    from models.pretrained import read_vocabulary

    texts = [text.strip() for text in texts if text.strip()]
    if not texts:
        raise TrimbertError("no sample text to encode")
    if sequence_length < 3:
        raise TrimbertError(f"sequence_length must be >= 3, got {sequence_length}")
    tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=read_vocabulary(vocabulary_path), lowercase=lowercase)
    cls_id, sep_id, pad_id = (tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]", "[PAD]"))
    token_ids = np.full((len(texts), sequence_length), pad_id, dtype=np.int32)  # [N, T]
    padding_mask = np.zeros((len(texts), sequence_length), dtype=np.int32)  # [N, T]
    for row, pieces in enumerate(tokenizer(texts)):
        pieces = [int(piece) for piece in np.asarray(pieces)][: sequence_length - 2]
        sequence = [cls_id, *pieces, sep_id]
        token_ids[row, : len(sequence)] = sequence
        padding_mask[row, : len(sequence)] = 1
    return {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding_mask}


def read_sample(path: str | pathlib.Path, max_lines: int = 256) -> list[str]:
    """Non-empty lines of a text file (the last tab-separated field, so TSV rows work too).

    Args:
        path: a plain-text or TSV file.
        max_lines: keep at most this many lines.
    """
    import io

    import tensorflow as tf  # tf.io.gfile: the sample may be on gs:// or another object store

    path = os.fspath(path)
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise TrimbertError(f"sample file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as handle:
        content = handle.read().decode("utf-8", errors="replace")
    lines = []
    for line in io.StringIO(content, newline=None):
        text = line.rstrip("\n").split("\t")[-1].strip()
        if text:
            lines.append(text)
        if len(lines) >= max_lines:
            break
    if not lines:
        raise TrimbertError(f"{path}: no text lines")
    return lines
