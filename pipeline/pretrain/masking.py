"""Dynamic masking for ``packed`` pre-training data, inside tf.data.

Each batch is masked afresh from a stateless seed ``(seed, batch_number)``, so
the same run sees the same masks whatever its start/stop history (a resumed
run continues with exactly the masks it would have seen), while every epoch
and every batch differs. BERT's recipe (Devlin et al. 2019, section 3.1):
choose ``masked_lm_prob`` of the real, non-special tokens (at most
``max_predictions``, at least one); replace 80% of them by [MASK], 10% by a
random token, keep 10%. With ``data.whole_word_mask`` the chosen positions are
whole words (``pipeline.pretrain.whole_words``) and the 80/10/10 decision is
one per word.

Which masking pre-training applies is the pretrain config's ``data`` section
(every rate, and ``whole_word_mask``), not the data's manifest: ``packed``
records are the same either way. The manifest's recorded ``whole_word_mask``
(``trimbert preprocess --whole-word-mask``) only draws a warning when it
differs from the config's.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import tensorflow as tf

import storage
from beam_jobs import features, whole_words
from beam_jobs.manifest import FILE_NAME as MANIFEST_FILE
from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError
from pipeline.pretrain import whole_words as tf_whole_words

if TYPE_CHECKING:
    from configs.schema import Config


@dataclasses.dataclass(frozen=True)
class MaskingSpec:
    """Everything masking needs to know.

    Args:
        vocabulary_size: random replacements are drawn from ``[0, vocabulary_size)``.
        mask_token_id: id of [MASK].
        special_token_ids: ids never chosen for prediction ([CLS], [SEP], [PAD]).
        max_predictions: masked positions per sequence (output width).
        masked_lm_prob: fraction of candidate tokens to predict.
        mask_token_rate: of the chosen, replaced by [MASK].
        random_token_rate: of the chosen, replaced by a random token.
        continuation: None to mask tokens; for whole-word masking, per vocabulary id whether it is a
            continuation piece (``beam_jobs.whole_words.continuation_table``).
    """

    vocabulary_size: int
    mask_token_id: int
    special_token_ids: tuple[int, ...]
    max_predictions: int = 20
    masked_lm_prob: float = 0.15
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1
    continuation: tuple[bool, ...] | None = None


def mask_batch(token_ids: tf.Tensor, padding_mask: tf.Tensor, spec: MaskingSpec,
               seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """Masks a batch of sequences.

    Args:
        token_ids: int32 [batch, length].
        padding_mask: bool or int [batch, length], true at real tokens.
        spec: the masking recipe.
        seed: int32/int64 [2], a stateless seed (e.g. ``(run_seed, batch_number)``).

    Returns:
        ``token_ids`` (masked), ``masked_lm_positions``, ``masked_lm_ids`` int32
        [batch, max_predictions] (zero-padded) and ``masked_lm_weights`` float32
        [batch, max_predictions] (1 real, 0 padding).
    """
    token_ids = tf.cast(token_ids, tf.int32)
    batch_size, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    candidates = tf.cast(padding_mask, tf.bool)
    for special in spec.special_token_ids:
        candidates &= token_ids != special
    k = tf.minimum(spec.max_predictions, length)
    num_candidates = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)  # [batch]
    wanted = tf.cast(tf.round(tf.cast(num_candidates, tf.float32) * spec.masked_lm_prob), tf.int32)
    wanted = tf.minimum(tf.maximum(wanted, tf.minimum(num_candidates, 1)), k)  # at least 1 if any
    if spec.continuation is not None:
        positions, chosen, decide = tf_whole_words.choose(
            token_ids, candidates, wanted, k, tf.constant(spec.continuation, tf.bool), seeds[:2])
    else:
        # Random scores; non-candidates get 2.0 so they sort last.  [batch, length]
        scores = tf.random.stateless_uniform(tf.shape(token_ids), seed=seeds[0])
        scores = tf.where(candidates, scores, 2.0)
        _, order = tf.math.top_k(-scores, k=k)  # [batch, k], lowest scores first
        chosen = tf.range(k)[None, :] < wanted[:, None]  # [batch, k]
        # Sort the chosen positions ascending; unchosen slots go to the end as `length`.
        positions = tf.sort(tf.where(chosen, order, length), axis=1)
        chosen = positions < length
        decide = tf.random.stateless_uniform(tf.shape(positions), seed=seeds[1])
    positions = tf.where(chosen, positions, 0)
    original = tf.gather(token_ids, positions, batch_dims=1)  # [batch, k]

    random_tokens = tf.random.stateless_uniform(
        tf.shape(positions), seed=seeds[2], minval=0, maxval=spec.vocabulary_size, dtype=tf.int32)
    replacement = tf.where(decide < spec.mask_token_rate, spec.mask_token_id,
                           tf.where(decide < spec.mask_token_rate + spec.random_token_rate,
                                    random_tokens, original))
    rows = tf.broadcast_to(tf.range(batch_size)[:, None], tf.shape(positions))
    # Scatter every slot, the unchosen ones into an extra column that is then dropped: fixed shapes (a
    # boolean_mask of the chosen slots made XLA's compile take tens of seconds).
    indices = tf.stack([rows, tf.where(chosen, positions, length)], axis=-1)  # [batch, k, 2]
    masked_ids = tf.tensor_scatter_nd_update(tf.pad(token_ids, [[0, 0], [0, 1]]), indices, replacement)[:, :length]

    pad = [[0, 0], [0, spec.max_predictions - k]]
    outputs = {
        "masked_lm_positions": tf.pad(positions, pad),
        "masked_lm_ids": tf.pad(tf.where(chosen, original, 0), pad),
        "masked_lm_weights": tf.pad(tf.cast(chosen, tf.float32), pad),
    }
    for tensor in outputs.values():
        tensor.set_shape([token_ids.shape[0], spec.max_predictions])
    return {"token_ids": masked_ids, **outputs}


def masking_spec(config: Config, manifest: Manifest, seq_len: int) -> MaskingSpec:
    """Dynamic masking of ``packed`` data as the config's ``data`` section says, with the data's special ids."""
    tokens = _vocabulary(manifest)
    vocabulary = special_ids(manifest, tokens)
    recorded = bool(manifest.data_config.get("whole_word_mask", False))
    if recorded != config.data.whole_word_mask:
        logging.getLogger(__name__).warning(
            "%s/%s: the data was preprocessed with whole_word_mask %s, the pretrain config has "
            "data.whole_word_mask %s: masking %s (the config decides)", manifest.directory, MANIFEST_FILE,
            str(recorded).lower(), str(config.data.whole_word_mask).lower(),
            "whole words" if config.data.whole_word_mask else "tokens")
    continuation = None
    if config.data.whole_word_mask:
        continuation = tuple(whole_words.continuation_table(tokens).tolist())
    return MaskingSpec(
        vocabulary_size=config.model.vocabulary_size, mask_token_id=vocabulary["[MASK]"],
        special_token_ids=(vocabulary["[PAD]"], vocabulary["[CLS]"], vocabulary["[SEP]"]),
        max_predictions=config.data.max_predictions, masked_lm_prob=config.data.masked_lm_prob,
        mask_token_rate=config.data.mask_token_rate, random_token_rate=config.data.random_token_rate,
        continuation=continuation)


def special_ids(manifest: Manifest, tokens: list[str] | None = None) -> dict[str, int]:
    """Ids of [PAD] [UNK] [CLS] [SEP] [MASK] in the vocabulary the data was tokenized with (``tokens``,
    when already read)."""
    tokens = _vocabulary(manifest) if tokens is None else tokens
    ids = features.special_token_ids(tokens)
    missing = [token for token in features.SPECIAL_TOKENS if token not in ids]
    if missing:
        raise TrimbertError(f"{manifest.vocabulary_path}: vocabulary lacks {', '.join(missing)}")
    return ids


def _vocabulary(manifest: Manifest) -> list[str]:
    """The tokens of the vocabulary the data was tokenized with, by id."""
    path = manifest.vocabulary_path
    if path is None or not storage.isfile(path):
        raise TrimbertError(f"{manifest.directory}/{MANIFEST_FILE}: vocab.path {path} cannot be read; "
                            f"dynamic masking needs the vocabulary's special-token ids")
    return storage.read_text(path).splitlines()
