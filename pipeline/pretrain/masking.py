"""Dynamic masking for ``packed`` pre-training data, inside tf.data.

Each batch is masked afresh from a stateless seed ``(seed, batch_number)``, so
the same run sees the same masks whatever its start/stop history (a resumed
run continues with exactly the masks it would have seen), while every epoch
and every batch differs. BERT's recipe (Devlin et al. 2019, section 3.1):
choose ``masked_lm_prob`` of the real, non-special tokens (at most
``max_predictions``, at least one); replace 80% of them by [MASK], 10% by a
random token, keep 10%.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import tensorflow as tf

import storage
from beam_jobs import features
from beam_jobs.manifest import FILE_NAME as MANIFEST_FILE
from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError

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
    """

    vocabulary_size: int
    mask_token_id: int
    special_token_ids: tuple[int, ...]
    max_predictions: int = 20
    masked_lm_prob: float = 0.15
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1


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
    # Random scores; non-candidates get 2.0 so they sort last.  [batch, length]
    scores = tf.random.stateless_uniform(tf.shape(token_ids), seed=seeds[0])
    scores = tf.where(candidates, scores, 2.0)
    k = tf.minimum(spec.max_predictions, length)
    _, order = tf.math.top_k(-scores, k=k)  # [batch, k], lowest scores first
    num_candidates = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)  # [batch]
    wanted = tf.cast(tf.round(tf.cast(num_candidates, tf.float32) * spec.masked_lm_prob), tf.int32)
    wanted = tf.minimum(tf.maximum(wanted, tf.minimum(num_candidates, 1)), k)  # at least 1 if any
    chosen = tf.range(k)[None, :] < wanted[:, None]  # [batch, k]
    # Sort the chosen positions ascending; unchosen slots go to the end as `length`.
    positions = tf.sort(tf.where(chosen, order, length), axis=1)
    chosen = positions < length
    positions = tf.where(chosen, positions, 0)
    original = tf.gather(token_ids, positions, batch_dims=1)  # [batch, k]

    decide = tf.random.stateless_uniform(tf.shape(positions), seed=seeds[1])
    random_tokens = tf.random.stateless_uniform(
        tf.shape(positions), seed=seeds[2], minval=0, maxval=spec.vocabulary_size, dtype=tf.int32)
    replacement = tf.where(decide < spec.mask_token_rate, spec.mask_token_id,
                           tf.where(decide < spec.mask_token_rate + spec.random_token_rate,
                                    random_tokens, original))
    rows = tf.broadcast_to(tf.range(batch_size)[:, None], tf.shape(positions))
    indices = tf.stack([rows, positions], axis=-1)  # [batch, k, 2]
    # Scatter only the chosen slots (padding slots point at position 0 = [CLS]).
    masked_ids = tf.tensor_scatter_nd_update(
        token_ids, tf.boolean_mask(indices, chosen), tf.boolean_mask(replacement, chosen))

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
    vocabulary = special_ids(manifest)
    return MaskingSpec(
        vocabulary_size=config.model.vocabulary_size, mask_token_id=vocabulary["[MASK]"],
        special_token_ids=(vocabulary["[PAD]"], vocabulary["[CLS]"], vocabulary["[SEP]"]),
        max_predictions=config.data.max_predictions, masked_lm_prob=config.data.masked_lm_prob,
        mask_token_rate=config.data.mask_token_rate, random_token_rate=config.data.random_token_rate)


def special_ids(manifest: Manifest) -> dict[str, int]:
    """Ids of [PAD] [UNK] [CLS] [SEP] [MASK] in the vocabulary the data was tokenized with."""
    path = manifest.vocabulary_path
    if path is None or not storage.isfile(path):
        raise TrimbertError(f"{manifest.directory}/{MANIFEST_FILE}: vocab.path {path} cannot be read; "
                            f"dynamic masking needs the vocabulary's special-token ids")
    ids = features.special_token_ids(storage.read_text(path).splitlines())
    missing = [token for token in features.SPECIAL_TOKENS if token not in ids]
    if missing:
        raise TrimbertError(f"{path}: vocabulary lacks {', '.join(missing)}")
    return ids
