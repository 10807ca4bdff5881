"""Dynamic whole-word masking (``data.whole_word_mask`` on ``packed`` data): whole words only, the budget,
Google's skip-and-continue walk, one 80/10/10 decision per word, under XLA, on real data and in a run."""

from __future__ import annotations

import collections
import dataclasses
import logging

import numpy as np
import tensorflow as tf

from beam_jobs.whole_words import continuation_table
from pipeline.pretrain.masking import MaskingSpec, mask_batch

PAD, CLS, SEP, MASK = 0, 2, 3, 4
# 40% of the ids are continuation pieces, so words of 3-5 pieces are common.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(60)] + [f"##p{i}" for i in range(40)]
WIDTH = 64


def _spec(max_predictions=20, masked_lm_prob=0.15, vocabulary=VOCAB, vocabulary_size=30522) -> MaskingSpec:
    return MaskingSpec(vocabulary_size=vocabulary_size, mask_token_id=MASK, special_token_ids=(CLS, SEP, PAD),
                       max_predictions=max_predictions, masked_lm_prob=masked_lm_prob,
                       continuation=tuple(continuation_table(vocabulary).tolist()))


def _packed(rows: int, seed: int) -> np.ndarray:
    """``[CLS] ... [SEP]`` sequences of random lengths over :data:`VOCAB`, zero-padded (as ``packed`` records)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, WIDTH), np.int32)
    for row, length in enumerate(rng.integers(4, WIDTH + 1, rows)):
        ids[row, :length] = rng.integers(5, len(VOCAB), length)
        ids[row, 0], ids[row, length - 1] = CLS, SEP
    return ids


def _check_whole_words(google_word_groups, ids: np.ndarray, out: dict, max_predictions: int, masked_lm_prob: float,
                       vocabulary=VOCAB) -> collections.Counter:
    """Asserts whole words (Google's groups, ``google_word_groups``), the budget and the walk's fill on every
    row; counts words by 80/10/10 outcome."""
    counts = collections.Counter()
    weights = out["masked_lm_weights"]
    for row in range(len(ids)):
        count = int(weights[row].sum())
        assert (weights[row, :count] == 1).all() and not weights[row, count:].any()
        positions = out["masked_lm_positions"][row, :count]
        assert list(positions) == sorted(set(positions.tolist()))
        np.testing.assert_array_equal(out["masked_lm_ids"][row, :count], ids[row, positions])
        groups = google_word_groups([vocabulary[token] for token in ids[row]])
        candidates = sum(map(len, groups))
        budget = min(max_predictions, max(round(candidates * masked_lm_prob), min(candidates, 1)))
        assert count <= budget
        chosen, untaken = set(positions.tolist()), []
        for group in groups:
            inside = chosen.intersection(group)
            assert not inside or inside == set(group), (row, group, sorted(chosen))
            if not inside:
                untaken.append(len(group))
                continue
            counts["multi-piece"] += len(group) > 1
            after, before = out["token_ids"][row, group], ids[row, group]
            kinds = {"mask" if new == MASK else "kept" if new == old else "random"
                     for new, old in zip(after, before, strict=True)}
            counts[kinds.pop() if len(kinds) == 1 else "mixed"] += 1
        # The walk skips a word that does not fit and goes on: every word left out is longer than what is left.
        assert all(size > budget - count for size in untaken), (row, untaken, budget, count)
        unchosen = np.ones(ids.shape[1], bool)
        unchosen[positions] = False
        np.testing.assert_array_equal(out["token_ids"][row, unchosen], ids[row, unchosen])
    return counts


def test_whole_words_budget_and_one_decision_per_word(google_word_groups):
    ids = _packed(3000, seed=1)
    out = {k: v.numpy() for k, v in mask_batch(tf.constant(ids), tf.constant(ids != PAD), _spec(20, 0.3),
                                               [4, 2]).items()}
    counts = _check_whole_words(google_word_groups, ids, out, 20, 0.3)
    words = counts["mask"] + counts["kept"] + counts["random"] + counts["mixed"]
    assert counts["multi-piece"] > 5000 and counts["mixed"] <= words // 1000
    assert abs(counts["mask"] / words - 0.8) < 0.015 and abs(counts["kept"] / words - 0.1) < 0.015


def test_a_binding_max_predictions_and_xla_keep_whole_words(google_word_groups):
    ids = _packed(500, seed=2)
    spec = _spec(max_predictions=5, masked_lm_prob=0.4)
    masked = tf.function(lambda ids, mask: mask_batch(ids, mask, spec, tf.constant([1, 9])), jit_compile=True)
    out = {k: v.numpy() for k, v in masked(tf.constant(ids), tf.constant(ids != PAD)).items()}
    assert out["masked_lm_positions"].shape == (500, 5)
    _check_whole_words(google_word_groups, ids, out, 5, 0.4)
    assert (out["masked_lm_weights"].sum(axis=1) < 5).sum() > 50  # words skipped for the budget


def test_same_seed_same_masks_and_token_masking_unchanged_without_the_flag():
    ids = _packed(40, seed=3)
    first = mask_batch(tf.constant(ids), tf.constant(ids != PAD), _spec(), [5, 9])
    again = mask_batch(tf.constant(ids), tf.constant(ids != PAD), _spec(), [5, 9])
    for name in first:
        np.testing.assert_array_equal(first[name].numpy(), again[name].numpy())
    tokens = dataclasses.replace(_spec(), continuation=None)
    plain = mask_batch(tf.constant(ids), tf.constant(ids != PAD), tokens, [5, 9])
    assert not np.array_equal(plain["masked_lm_positions"].numpy(), first["masked_lm_positions"].numpy())


def test_packed_data_is_masked_in_whole_words_when_the_config_says_so(packed_data, tiny_config, vocab_path, caplog,
                                                                      google_word_groups):
    from beam_jobs.manifest import Manifest
    from pipeline.pretrain.input import pretraining_dataset
    from pipeline.pretrain.masking import masking_spec

    config = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, whole_word_mask=True))
    manifest = Manifest.read(packed_data)
    with caplog.at_level(logging.WARNING):
        spec = masking_spec(config, manifest, manifest.seq_len)
    assert "preprocessed with whole_word_mask false" in caplog.text and "masking whole words" in caplog.text
    vocabulary = vocab_path.read_text(encoding="utf-8").splitlines()
    assert spec.continuation == tuple(token.startswith("##") for token in vocabulary)
    counts = collections.Counter()
    for inputs, labels in pretraining_dataset(manifest, 64, 0, 100, spec).take(4):
        masked_ids = inputs["token_ids"].numpy()
        positions = inputs["mask_positions"].numpy()
        weights = labels["masked_lm_weights"].numpy()
        ids = masked_ids.copy()  # the original tokens: the labels put back
        for row in range(len(ids)):
            real = weights[row] > 0
            ids[row, positions[row, real]] = labels["masked_lm_ids"].numpy()[row, real]
        out = {"token_ids": masked_ids, "masked_lm_positions": positions, "masked_lm_weights": weights,
               "masked_lm_ids": labels["masked_lm_ids"].numpy()}
        counts += _check_whole_words(google_word_groups, ids, out, config.data.max_predictions,
                                     config.data.masked_lm_prob, vocabulary)
    assert counts["multi-piece"] > 20
    caplog.clear()
    masking_spec(tiny_config, manifest, manifest.seq_len)
    assert not caplog.text  # config and data agree: no warning


def test_a_run_with_whole_word_masking_completes(packed_data, run_pretraining, read_metrics, tmp_path):
    summary = run_pretraining(packed_data, tmp_path / "run", steps=3, **{"data.whole_word_mask": "true"})
    assert summary["steps"] == 3
    assert [record["step"] for record in read_metrics(tmp_path / "run")] == [1, 2, 3]
    assert all(np.isfinite(record["loss"]) for record in read_metrics(tmp_path / "run"))
