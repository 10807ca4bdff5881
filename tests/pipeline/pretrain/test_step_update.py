"""The XLA-compiled update of ``make_train_step`` (``jit_update``) trains exactly like the plain one."""

import numpy as np
import pytest
import tensorflow as tf

import models
from configs import schema as config_lib
from pipeline.pretrain.optimizer import pretraining_optimizer
from pipeline.pretrain.step import make_train_step

BATCH, LENGTH, PREDICTIONS, VOCABULARY = 4, 16, 3, 200


def _batch():
    rng = np.random.default_rng(0)
    positions = np.sort(rng.choice(np.arange(1, LENGTH), (BATCH, PREDICTIONS), replace=False), axis=1)
    inputs = {"token_ids": rng.integers(5, VOCABULARY, (BATCH, LENGTH)).astype(np.int32),
              "segment_ids": np.zeros((BATCH, LENGTH), np.int32), "padding_mask": np.ones((BATCH, LENGTH), np.int32),
              "mask_positions": positions.astype(np.int32)}
    labels = {"masked_lm_ids": rng.integers(5, VOCABULARY, (BATCH, PREDICTIONS)).astype(np.int32),
              "masked_lm_weights": np.array([[1, 1, 0]] * BATCH, np.float32),
              "next_sentence_labels": np.zeros((BATCH, 1), np.int32)}
    return inputs, labels


def _train(optimizer_name: str, jit_update: bool, steps: int = 4):
    config = config_lib.load("tiny", [
        f"model.vocabulary_size={VOCABULARY}", f"model.max_sequence_length={LENGTH}", f"data.seq_len={LENGTH}",
        "model.hidden_dim=32",
        "model.num_heads=2", "model.intermediate_dim=64", "model.dropout=0.0", f"pretrain.optimizer={optimizer_name}",
        "pretrain.learning_rate=1e-2", "pretrain.warmup_fraction=0.0",
        # A threshold the gradient exceeds, so the clipping is part of what is compared.
        "pretrain.clip_norm=0.05", "pretrain.next_sentence=false",
        "pretrain.jit_compile=false"])  # the update is what is compiled or not here
    tf.keras.utils.set_random_seed(0)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = models.build_pretraining_model(models.build_encoder(config), next_sentence=False)
        optimizer = pretraining_optimizer(config.pretrain)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    dataset = tf.data.Dataset.from_tensors(_batch()).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    train_step = make_train_step(strategy, model, None, optimizer, step, config, BATCH, 1, False,
                                 jit_update=jit_update)
    losses = [float(train_step(iterator)["loss"]) for _ in range(steps)]
    return losses, [v.numpy() for v in model.trainable_variables], int(optimizer.iterations.numpy())


@pytest.mark.parametrize("optimizer_name", ["adamw", "lamb"])
def test_jit_update_gives_the_plain_update(optimizer_name):
    plain_losses, plain_weights, plain_iterations = _train(optimizer_name, jit_update=False)
    jit_losses, jit_weights, jit_iterations = _train(optimizer_name, jit_update=True)
    assert jit_iterations == plain_iterations == 4
    assert plain_losses[-1] < plain_losses[0]  # the steps trained: the comparison is not of untouched weights
    np.testing.assert_allclose(jit_losses, plain_losses, rtol=1e-5)
    for jit_weight, plain_weight in zip(jit_weights, plain_weights, strict=True):
        np.testing.assert_allclose(jit_weight, plain_weight, rtol=1e-4, atol=1e-6)
