"""Static masking of a batch of ``bert`` instances at once, with numpy.

Each instance is chosen and masked as Google's create_pretraining_data does: ``count =
min(max_predictions, max(1, round(length * masked_lm_prob)))`` positions, a uniform random subset
of every position but [CLS] and the two [SEP]s (never padding), sorted; of those, ``mask_token_rate``
become [MASK], ``random_token_rate`` a uniformly random id of the vocabulary, the rest keep their
token. The labels are the original ids.

The draws are counter-based: draw ``j`` of stream ``s`` of an instance is splitmix64 of the
instance's 64-bit key, so an instance is masked the same whatever batch it is in. The subset is
the ``count`` candidate positions with the smallest draws (a uniform random subset, as a shuffle
and take). Whole-word masking (``data.whole_word_mask``) is ``beam_jobs.whole_words``, on other
streams of the same keys.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SELECT, _KIND, _RANDOM_ID = 1, 2, 3


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of ``values + golden ratio`` (uint64, elementwise)."""
    z = values.astype(np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def draws(keys: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``[len(keys), count]`` uniform uint64 draws: the splitmix64 sequence seeded by (key, stream)."""
    seeds = splitmix64(keys.astype(np.uint64) ^ np.uint64(stream))
    steps = np.arange(count, dtype=np.uint64) * _GOLDEN
    return splitmix64(seeds[:, None] + steps[None, :])


def unit_floats(bits: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from uint64 draws (their top 53 bits)."""
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class Masked(NamedTuple):
    """A masked batch: ``input_ids [n, seq_len]``; ``positions``, ``labels [n, max_predictions]``
    (zero-padded); ``counts [n]``."""

    input_ids: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    counts: np.ndarray


def assemble(source: np.ndarray, a_start: np.ndarray, a_length: np.ndarray, b_start: np.ndarray,
             b_length: np.ndarray, seq_len: int, cls: int, sep: int) -> np.ndarray:
    """``[n, seq_len]`` sequences ``[CLS] A [SEP] B [SEP]``, zero-padded; A and B are slices of ``source``."""
    column = np.arange(seq_len)[None, :]
    a_end = 1 + a_length[:, None]          # position of the first [SEP]
    b_end = a_end + 1 + b_length[:, None]  # position of the last [SEP]
    in_a = (column >= 1) & (column < a_end)
    in_b = (column > a_end) & (column < b_end)
    index = np.where(in_a, a_start[:, None] + column - 1, 0)
    index = np.where(in_b, b_start[:, None] + column - a_end - 1, index)
    tokens = np.where(in_a | in_b, source[index], 0)
    tokens[:, 0] = cls
    rows = np.arange(len(a_length))
    tokens[rows, a_end[:, 0]] = sep
    tokens[rows, b_end[:, 0]] = sep
    return tokens


def candidates(length: np.ndarray, a_length: np.ndarray, seq_len: int) -> np.ndarray:
    """``[n, seq_len]`` bool: the positions that may be masked (not [CLS], a [SEP] or padding)."""
    column = np.arange(seq_len)[None, :]
    return (column >= 1) & (column < length[:, None] - 1) & (column != a_length[:, None] + 1)


def prediction_budget(length: np.ndarray, masked_lm_prob: float, max_predictions: int) -> np.ndarray:
    """``[n]`` Google's ``num_to_predict``: ``min(max_predictions, max(1, round(length * masked_lm_prob)))``."""
    return np.minimum(np.maximum(1, np.rint(length * masked_lm_prob).astype(np.int64)), max_predictions)


def mask_batch(tokens: np.ndarray, a_length: np.ndarray, length: np.ndarray, keys: np.ndarray, *,
               max_predictions: int, masked_lm_prob: float, mask_token_rate: float, random_token_rate: float,
               mask_id: int, vocabulary_size: int) -> Masked:
    """Masks a batch of sequences from :func:`assemble`.

    Args:
        tokens: ``[n, seq_len]`` sequences with [CLS]/[SEP], zero-padded.
        a_length: ``[n]`` tokens of segment A (its [SEP] is at ``a_length + 1``).
        length: ``[n]`` real tokens.
        keys: ``[n]`` the instances' 64-bit keys.
        max_predictions, masked_lm_prob, mask_token_rate, random_token_rate: as in DataConfig.
        mask_id: id of [MASK].
        vocabulary_size: random replacements are ids in [0, vocabulary_size).
    """
    rows, seq_len = tokens.shape
    candidate = candidates(length, a_length, seq_len)
    counts = np.minimum(prediction_budget(length, masked_lm_prob, max_predictions), length - 3)
    select = np.where(candidate, draws(keys, _SELECT, seq_len), np.iinfo(np.uint64).max)
    chosen = np.argsort(select, axis=1, kind="stable")[:, :max_predictions]
    real = np.arange(max_predictions)[None, :] < counts[:, None]
    positions = np.sort(np.where(real, chosen, seq_len), axis=1)
    positions = np.where(real, positions, 0)
    row_index = np.broadcast_to(np.arange(rows)[:, None], positions.shape)
    labels = np.where(real, tokens[row_index, positions], 0)
    kind = unit_floats(draws(keys, _KIND, max_predictions))
    return replace_chosen(tokens, positions, labels, counts, kind, keys, mask_token_rate=mask_token_rate,
                          random_token_rate=random_token_rate, mask_id=mask_id, vocabulary_size=vocabulary_size)


def replace_chosen(tokens: np.ndarray, positions: np.ndarray, labels: np.ndarray, counts: np.ndarray,
                   kind: np.ndarray, keys: np.ndarray, *, mask_token_rate: float, random_token_rate: float,
                   mask_id: int, vocabulary_size: int) -> Masked:
    """The 80/10/10 replacement of the chosen positions: slot ``j`` of a row becomes [MASK] when
    ``kind[j] < mask_token_rate``, else a random id (draw ``j`` of the instance's random-id stream) when
    below ``mask_token_rate + random_token_rate``, else keeps its token; slots past ``counts`` are padding."""
    rows, max_predictions = positions.shape
    real = np.arange(max_predictions)[None, :] < counts[:, None]
    row_index = np.broadcast_to(np.arange(rows)[:, None], positions.shape)
    random_ids = (draws(keys, _RANDOM_ID, max_predictions) % np.uint64(vocabulary_size)).astype(tokens.dtype)
    replacement = np.where(kind < mask_token_rate, mask_id,
                           np.where(kind < mask_token_rate + random_token_rate, random_ids, labels))
    masked = tokens.copy()
    masked[row_index[real], positions[real]] = replacement[real]
    return Masked(masked, positions, labels, counts)
