"""Dynamic masking: counts, special tokens, the 80/10/10 split, determinism per seed."""

import numpy as np
import tensorflow as tf

from pipeline.pretrain.masking import MaskingSpec, mask_batch

CLS, SEP, PAD, MASK = 101, 102, 0, 103
SPEC = MaskingSpec(vocabulary_size=1000, mask_token_id=MASK, special_token_ids=(CLS, SEP, PAD),
                   max_predictions=20, masked_lm_prob=0.15)


def _batch(lengths, width=64, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width), np.int32)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(200, 1000, length)
        ids[row, 0], ids[row, length - 1] = CLS, SEP
    mask = ids != PAD
    return ids, mask


def test_counts_positions_and_labels():
    ids, mask = _batch([64, 30, 3])
    out = {k: v.numpy() for k, v in mask_batch(tf.constant(ids), tf.constant(mask), SPEC, [1, 2]).items()}
    # round(0.15 * candidates), candidates = length - 2 specials, at least one.
    assert out["masked_lm_weights"].sum(axis=1).tolist() == [9, 4, 1]
    for row in range(3):
        count = int(out["masked_lm_weights"][row].sum())
        positions = out["masked_lm_positions"][row, :count]
        assert list(positions) == sorted(set(positions))  # ascending, no repeats
        assert all(ids[row, p] not in (CLS, SEP, PAD) for p in positions)
        np.testing.assert_array_equal(out["masked_lm_ids"][row, :count], ids[row, positions])
        assert not out["masked_lm_positions"][row, count:].any()
        assert not out["masked_lm_ids"][row, count:].any()
        unchosen = np.ones(64, bool)
        unchosen[positions] = False
        np.testing.assert_array_equal(out["token_ids"][row, unchosen], ids[row, unchosen])


def test_replacement_rates_are_80_10_10():
    ids, mask = _batch([64] * 400, seed=3)
    spec = MaskingSpec(vocabulary_size=1000, mask_token_id=MASK, special_token_ids=(CLS, SEP, PAD),
                       max_predictions=64, masked_lm_prob=0.5)
    out = {k: v.numpy() for k, v in mask_batch(tf.constant(ids), tf.constant(mask), spec, [7, 7]).items()}
    chosen = out["masked_lm_weights"] > 0
    rows = np.nonzero(chosen)[0]
    new = out["token_ids"][rows, out["masked_lm_positions"][chosen]]
    old = out["masked_lm_ids"][chosen]
    masked = np.mean(new == MASK)
    kept = np.mean(new == old)
    assert abs(masked - 0.8) < 0.02
    assert abs(kept - 0.1) < 0.02  # a random draw equal to the original is rare (1 in 800)


def test_same_seed_same_masks_other_seed_other_masks():
    ids, mask = _batch([64, 40])
    first = mask_batch(tf.constant(ids), tf.constant(mask), SPEC, [5, 9])
    again = mask_batch(tf.constant(ids), tf.constant(mask), SPEC, [5, 9])
    other = mask_batch(tf.constant(ids), tf.constant(mask), SPEC, [5, 10])
    np.testing.assert_array_equal(first["masked_lm_positions"], again["masked_lm_positions"])
    np.testing.assert_array_equal(first["token_ids"], again["token_ids"])
    assert not np.array_equal(first["masked_lm_positions"], other["masked_lm_positions"])
