"""Static whole-word masking of a batch of ``bert`` instances, with numpy (``data.whole_word_mask``).

Google's create_pretraining_data with ``do_whole_word_mask=True`` (create_masked_lm_predictions):

* the candidates are every position but [CLS] and the [SEP]s; they are grouped into words in
  order: a continuation piece (a vocabulary token starting with ``##``) joins the group of the
  previous candidate, anything else starts a group. So a ``##`` piece first after [CLS] is a group
  of its own, and a ``##`` piece first in segment B joins the last word of segment A, across the
  [SEP], as Google's loop does;
* the groups are shuffled; the budget is ``num_to_predict = min(max_predictions, max(1,
  round(length * masked_lm_prob)))`` over every token of the instance, [CLS] and [SEP]s included
  (as :func:`beam_jobs.masking.mask_batch`);
* walking the shuffled groups, a group is taken when its pieces still fit in the budget and skipped
  otherwise (a later, smaller word may still fit), so a word is masked whole or not at all and at
  most ``num_to_predict`` positions are masked (fewer when no remaining word fits; none when every
  word is longer than the budget);
* the positions are sorted; the labels are the original ids.

The 80/10/10 decision is made once per *word* and applied to all its pieces (Google draws it per
piece even in whole-word mode): a chosen word becomes all [MASK], or all random ids (one random id
drawn per piece), or stays as it was.

The draws are counter-based, as in :mod:`beam_jobs.masking` (other streams of the same key): word
``j`` (counted from 0 in the sequence) has order draw ``j`` of stream ``_ORDER`` and decision draw
``j`` of stream ``_WORD_KIND``; the shuffle is the words sorted by their order draws. Masked slot
``i`` has random id draw ``i`` of the token-level random-id stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from beam_jobs.masking import Masked, candidates, draws, prediction_budget, replace_chosen, unit_floats

_ORDER, _WORD_KIND = 4, 5


def continuation_table(tokens: Sequence[str]) -> np.ndarray:
    """``[len(tokens)]`` bool, true at the ids of WordPiece continuation pieces (tokens starting with ``##``)."""
    return np.fromiter((token.startswith("##") for token in tokens), dtype=bool, count=len(tokens))


def order_draws(keys: np.ndarray, seq_len: int) -> np.ndarray:
    """``[n, seq_len]`` uint64: the order draw of word ``j`` of each instance at column ``j``; the walk
    visits the words by increasing draw (a shuffle)."""
    return draws(keys, _ORDER, seq_len)


def word_numbers(tokens: np.ndarray, candidate: np.ndarray, continuation: np.ndarray) -> np.ndarray:
    """``[n, seq_len]`` the 1-based number of each candidate's word in its sequence; 0 elsewhere.

    A candidate starts a word unless it is a continuation piece and some earlier position is a
    candidate (it then joins the previous candidate's word).
    """
    earlier = np.cumsum(candidate, axis=1) > 1
    starts = candidate & ~(continuation[tokens] & earlier)
    return np.where(candidate, np.cumsum(starts, axis=1), 0)


def take_words(sizes: np.ndarray, order: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """``[n, words]`` bool: the words Google's walk takes.

    Args:
        sizes: ``[n, words]`` pieces of each word; 0 where there is no word.
        order: ``[n, words]`` word indexes in walk order, real words first.
        budget: ``[n]`` most positions to mask.

    The walk in a few vectorised passes: the longest prefix of the order that fits is taken at
    once; then, repeatedly, the first word after the last one taken that still fits (a word skipped
    once never fits later: the remaining budget only shrinks).
    """
    rows = np.arange(len(sizes))
    walked = np.take_along_axis(sizes, order, axis=1)
    taken = (np.cumsum(walked, axis=1) <= budget[:, None]) & (walked > 0)
    remaining = budget - (walked * taken).sum(axis=1)
    last = taken.sum(axis=1) - 1
    rank = np.arange(sizes.shape[1])[None, :]
    while True:
        fits = (rank > last[:, None]) & (walked > 0) & (walked <= remaining[:, None])
        more = fits.any(axis=1)
        if not more.any():
            break
        first = fits.argmax(axis=1)
        taken[rows[more], first[more]] = True
        remaining = np.where(more, remaining - walked[rows, first], remaining)
        last = np.where(more, first, last)
    words = np.zeros_like(taken)
    np.put_along_axis(words, order, taken, axis=1)
    return words


def mask_batch(tokens: np.ndarray, a_length: np.ndarray, length: np.ndarray, keys: np.ndarray, *,
               continuation: np.ndarray, max_predictions: int, masked_lm_prob: float, mask_token_rate: float,
               random_token_rate: float, mask_id: int, vocabulary_size: int) -> Masked:
    """Masks whole words of a batch of sequences from :func:`beam_jobs.masking.assemble`.

    Args:
        tokens, a_length, length, keys: as :func:`beam_jobs.masking.mask_batch`.
        continuation: :func:`continuation_table` of the vocabulary.
        max_predictions, masked_lm_prob, mask_token_rate, random_token_rate, mask_id, vocabulary_size:
            as :func:`beam_jobs.masking.mask_batch`.
    """
    rows, seq_len = tokens.shape
    candidate = candidates(length, a_length, seq_len)
    words = word_numbers(tokens, candidate, continuation)
    budget = prediction_budget(length, masked_lm_prob, max_predictions)
    flat = (words + (seq_len + 1) * np.arange(rows)[:, None]).ravel()
    sizes = np.bincount(flat, minlength=rows * (seq_len + 1)).reshape(rows, seq_len + 1)
    sizes = sizes[:, 1:]  # word j + 1 at column j; column 0 counted the non-candidates
    order = np.argsort(np.where(sizes > 0, order_draws(keys, seq_len), np.iinfo(np.uint64).max), axis=1,
                       kind="stable")
    taken = take_words(sizes, order, budget)
    row_index = np.arange(rows)[:, None]
    chosen = candidate & taken[row_index, np.maximum(words - 1, 0)]
    counts = chosen.sum(axis=1)
    # Chosen columns first, ascending (a stable sort of "not chosen").
    positions = np.argsort(~chosen, axis=1, kind="stable")[:, :max_predictions]
    real = np.arange(max_predictions)[None, :] < counts[:, None]
    positions = np.where(real, positions, 0)
    row_index = np.broadcast_to(row_index, positions.shape)
    labels = np.where(real, tokens[row_index, positions], 0)
    kind = unit_floats(draws(keys, _WORD_KIND, seq_len))[row_index, np.maximum(words[row_index, positions] - 1, 0)]
    return replace_chosen(tokens, positions, labels, counts, kind, keys, mask_token_rate=mask_token_rate,
                          random_token_rate=random_token_rate, mask_id=mask_id, vocabulary_size=vocabulary_size)
