"""Dynamic whole-word masking in TensorFlow: which positions to predict (``data.whole_word_mask``).

The TF twin of ``beam_jobs.whole_words`` (Google's ``do_whole_word_mask``), for ``packed`` data
masked in tf.data:

* word boundaries come from the vocabulary: a per-id "continuation piece" (``##...``) table is
  gathered per token; a candidate starts a word unless it is a continuation piece with an earlier
  candidate (so a ``##`` piece right after [CLS], the rest of a word cut off by the packing, is a
  word of its own); word numbers are the running count of word starts;
* each word gets one uniform score; the words are walked in score order, each taken while its
  pieces still fit in the budget and skipped otherwise (a later, smaller word may still fit), so
  a word is masked whole or not at all and the budget is never exceeded. The budget is the
  token-level path's (``masked_lm_prob`` of the candidates, at least one, at most
  ``max_predictions``), so turning whole words on changes which positions, not how many are
  allowed;
* each word also gets one uniform draw for the 80/10/10 decision, applied to all its pieces.

Every tensor has a fixed shape (``[batch, length]`` or ``[batch, k]``) and the walk after the first
skipped word is a ``tf.while_loop`` bounded by ``k`` iterations (it takes one more word per
iteration), so the ops run under XLA and tf.distribute.
"""

from __future__ import annotations

import tensorflow as tf


def choose(token_ids: tf.Tensor, candidates: tf.Tensor, budget: tf.Tensor, k: tf.Tensor, continuation: tf.Tensor,
           seeds: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The whole words to predict.

    Args:
        token_ids: int32 [batch, length].
        candidates: bool [batch, length], true where a token may be predicted.
        budget: int32 [batch], most positions to predict (at most ``k``).
        k: int32 scalar, the output width.
        continuation: bool [vocabulary], true at continuation pieces.
        seeds: int64 [2, 2], stateless seeds of the word scores and of the word decisions.

    Returns:
        ``positions`` int32 [batch, k] ascending (``length`` in unused slots), ``chosen`` bool
        [batch, k], and ``decide`` float32 [batch, k]: the 80/10/10 draw of each slot's word.
    """
    batch_size, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    earlier = tf.cumsum(tf.cast(candidates, tf.int32), axis=1) > 1
    starts = candidates & ~(tf.gather(continuation, token_ids) & earlier)
    words = tf.where(candidates, tf.cumsum(tf.cast(starts, tf.int32), axis=1), 0)  # 1-based; 0: not a candidate
    # Pieces of word j + 1 at column j (one segment per row and word number; number 0 is dropped).
    segments = words + (length + 1) * tf.range(batch_size)[:, None]
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(words), segments, batch_size * (length + 1))
    sizes = tf.reshape(sizes, [batch_size, length + 1])[:, 1:]
    scores = tf.where(sizes > 0, tf.random.stateless_uniform([batch_size, length], seed=seeds[0]), 2.0)
    order = tf.argsort(scores, axis=1, stable=True)
    walked = tf.gather(sizes, order, batch_dims=1)
    taken = (tf.cumsum(walked, axis=1) <= budget[:, None]) & (walked > 0)  # the prefix that fits
    remaining = budget - tf.reduce_sum(tf.where(taken, walked, 0), axis=1)
    last = tf.reduce_sum(tf.cast(taken, tf.int32), axis=1) - 1
    rank = tf.range(length)[None, :]

    def fits(remaining, last):
        return (rank > last[:, None]) & (walked > 0) & (walked <= remaining[:, None])

    def more(taken, remaining, last):
        return tf.reduce_any(fits(remaining, last))

    def take_next(taken, remaining, last):
        # The first word after the last one taken that still fits (a word skipped never fits later).
        fitting = fits(remaining, last)
        found = tf.reduce_any(fitting, axis=1)
        first = tf.argmax(tf.cast(fitting, tf.int32), axis=1, output_type=tf.int32)
        taken |= tf.one_hot(first, length, on_value=True, off_value=False) & found[:, None]
        remaining -= tf.where(found, tf.gather(walked, first, batch_dims=1), 0)
        return taken, remaining, tf.where(found, first, last)

    taken, _, _ = tf.while_loop(more, take_next, (taken, remaining, last), maximum_iterations=k)
    taken_words = tf.gather(taken, tf.argsort(order, axis=1), batch_dims=1)  # back to word order
    word_index = tf.maximum(words - 1, 0)
    chosen_tokens = candidates & tf.gather(taken_words, word_index, batch_dims=1)
    column = tf.broadcast_to(tf.range(length)[None, :], tf.shape(token_ids))
    # The k smallest keys: the chosen columns ascending, then the others; the width stays k.
    keys, positions = tf.math.top_k(-tf.where(chosen_tokens, column, length + column), k=k)
    chosen = -keys < length
    positions = tf.where(chosen, positions, length)
    word_draws = tf.random.stateless_uniform([batch_size, length], seed=seeds[1])
    decide = tf.gather(word_draws, tf.gather(word_index, tf.minimum(positions, length - 1), batch_dims=1),
                       batch_dims=1)
    return positions, chosen, decide
