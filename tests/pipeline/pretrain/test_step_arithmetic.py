"""The pre-training step's arithmetic, driven directly: replicas, gradient accumulation, loss scaling,
clipping and XLA each train exactly like the plain one-device float32 step on the same global batches."""

from __future__ import annotations

import numpy as np
import pytest

GLOBAL_BATCH = 8


def _assert_same_training(expected, actual, loss_tolerance=1e-4, weight_tolerance=1e-4):
    """Same loss at every step and the same final weights; the loss must fall, so later steps depend on the
    size of earlier updates (a constant factor on an update shows)."""
    assert len(expected.losses) == len(actual.losses) >= 3
    assert expected.losses[-1] < expected.losses[0] - 0.05, expected.losses
    np.testing.assert_allclose(actual.losses, expected.losses, rtol=loss_tolerance)
    for have, want in zip(actual.weights, expected.weights, strict=True):
        np.testing.assert_allclose(have, want, rtol=weight_tolerance, atol=1e-5)


def test_two_mirrored_replicas_match_one_device(step_config, plain_sgd, fixed_dataset, train_steps):
    """Two mirrored CPU replicas, each on half of every global batch, end where one device does.

    Plain SGD without clipping (PLAIN_SGD): if the replicas' gradients were summed but not divided by
    the number of replicas (or divided twice), every update would be twice (or half) as large.
    """
    from pipeline.pretrain import distribution

    config = step_config(**plain_sgd)
    mirrored = distribution.make_strategy("mirrored", num_cpu_replicas=2)
    assert mirrored.num_replicas_in_sync == 2, "the CPU must be split in two before TensorFlow starts"
    one_device = train_steps(config, fixed_dataset(4, GLOBAL_BATCH), 4, GLOBAL_BATCH)
    replicas = train_steps(config, fixed_dataset(4, GLOBAL_BATCH), 4, GLOBAL_BATCH, strategy=mirrored)
    _assert_same_training(one_device, replicas)
    # The logged masked-LM accuracy is normalised by the global count too: the same fraction on both.
    np.testing.assert_allclose([m["mlm_correct"] for m in replicas.metrics],
                               [m["mlm_correct"] for m in one_device.metrics], rtol=1e-5)


def test_gradient_accumulation_matches_one_large_batch(step_config, plain_sgd, fixed_dataset, train_steps):
    """Two micro-batches of 4 per step end with the weights and losses of one batch of 8.

    Micro-batch losses are divided by the global count of masked tokens, so their gradients must be
    summed; averaging them instead (a factor 1/2) would halve every update under plain SGD.
    """
    config = step_config(**plain_sgd)
    whole = train_steps(config, fixed_dataset(4, GLOBAL_BATCH), 4, GLOBAL_BATCH)
    accumulated = train_steps(config, fixed_dataset(4, GLOBAL_BATCH), 4, GLOBAL_BATCH, accumulation=2)
    _assert_same_training(whole, accumulated)
    np.testing.assert_allclose([m["mlm_correct"] for m in accumulated.metrics],
                               [m["mlm_correct"] for m in whole.metrics], rtol=1e-5)


# variant -> (its overrides, the reference's, the loss tolerance); "sgd" stands for plain_sgd's overrides.
VARIANTS = {
    "bfloat16": ({"sgd": True, "pretrain.mixed_precision": "bfloat16"}, {"sgd": True}, 5e-2),
    "float16": ({"sgd": True, "pretrain.mixed_precision": "float16"}, {"sgd": True}, 1e-2),
    # No dropout: XLA draws other dropout masks, which would change the losses from step 1.
    "xla-lamb": ({"pretrain.jit_compile": True, "pretrain.optimizer": "lamb", "pretrain.learning_rate": 1e-2,
                  "model.dropout": 0.0},
                 {"pretrain.optimizer": "lamb", "pretrain.learning_rate": 1e-2, "model.dropout": 0.0}, 1e-4),
}


# xla-lamb is slow (XLA compiles LAMB's step, about 15-25 s): the XLA-compiled step is in the default suite through
# test_accelerator_readiness, LAMB through the jit_update test below.
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == "xla-lamb" else name
                                  for name in VARIANTS])
def test_mixed_precision_and_xla_follow_the_float32_step(step_config, plain_sgd, fixed_dataset, train_steps, tmp_path,
                                                         name):
    """Each variant follows the float32, non-XLA step of the same optimizer, step by step.

    Mixed precision runs with plain SGD (PLAIN_SGD): float16 gradients are computed on the loss times
    the loss scale (2^15) and must be divided by it once; a scale left on (or removed twice) changes
    the update by 2^15 under SGD, while AdamW would divide it out and still train.
    """
    import tensorflow as tf

    from pipeline.pretrain.optimizer import pretraining_optimizer

    def overrides(spec):
        return {**(plain_sgd if spec.get("sgd") else {}), **{k: v for k, v in spec.items() if k != "sgd"}}

    variant, reference, loss_tolerance = (overrides(VARIANTS[name][0]), overrides(VARIANTS[name][1]),
                                          VARIANTS[name][2])
    variant_run = train_steps(step_config(**variant), fixed_dataset(3, GLOBAL_BATCH), 3, GLOBAL_BATCH)
    reference_run = train_steps(step_config(**reference), fixed_dataset(3, GLOBAL_BATCH), 3, GLOBAL_BATCH)
    np.testing.assert_allclose(variant_run.losses, reference_run.losses, rtol=loss_tolerance)
    assert reference_run.losses[-1] < reference_run.losses[0]
    if variant.get("pretrain.mixed_precision") == "float16":
        optimizer = variant_run.optimizer
        assert int(optimizer.step_counter.numpy()) == 3  # every step finite: none skipped by the loss scale
        assert float(optimizer.dynamic_scale.numpy()) > 1.0
        # The loss-scale state is checkpointed with the optimizer: a fresh one restores every variable of it.
        path = tf.train.Checkpoint(optimizer=optimizer).save(str(tmp_path / "ckpt"))
        fresh = pretraining_optimizer(step_config(**variant).pretrain)
        fresh.build(variant_run.model.trainable_variables)
        tf.train.Checkpoint(optimizer=fresh).restore(path).assert_existing_objects_matched()
        assert int(fresh.step_counter.numpy()) == 3


@pytest.mark.parametrize("optimizer_name", ["adamw", "lamb"])
def test_the_xla_compiled_update_gives_the_plain_update(step_config, fixed_dataset, train_steps, optimizer_name):
    """``jit_update`` (clipping and the update XLA-compiled on one replica) trains exactly like the plain
    update; the clip threshold is one the gradient exceeds, so clipping is part of what is compared."""
    config = step_config(**{"pretrain.optimizer": optimizer_name, "pretrain.learning_rate": 1e-2,
                            "pretrain.clip_norm": 0.05, "model.dropout": 0.0})
    plain = train_steps(config, fixed_dataset(4, GLOBAL_BATCH), 4, GLOBAL_BATCH, jit_update=False)
    compiled = train_steps(config, fixed_dataset(4, GLOBAL_BATCH), 4, GLOBAL_BATCH, jit_update=True)
    assert int(plain.optimizer.iterations.numpy()) == int(compiled.optimizer.iterations.numpy()) == 4
    assert plain.losses[-1] < plain.losses[0]  # the steps trained: the comparison is not of untouched weights
    np.testing.assert_allclose(compiled.losses, plain.losses, rtol=1e-5)
    for have, want in zip(compiled.weights, plain.weights, strict=True):
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-6)


def test_clipping_caps_the_global_update(step_config, plain_sgd, fixed_dataset, train_steps):
    """With global-norm clipping at a threshold far below the gradient's norm, one plain-SGD step moves the
    weights by exactly rate x threshold in global norm; without clipping, by far more."""
    clipped_config = step_config(**{**plain_sgd, "pretrain.clip_norm": 1e-3})
    start = train_steps(clipped_config, fixed_dataset(1, GLOBAL_BATCH), 0, GLOBAL_BATCH).weights
    clipped = train_steps(clipped_config, fixed_dataset(1, GLOBAL_BATCH), 1, GLOBAL_BATCH).weights
    free = train_steps(step_config(**plain_sgd), fixed_dataset(1, GLOBAL_BATCH), 1, GLOBAL_BATCH).weights

    def moved(weights):
        return float(np.sqrt(sum(np.sum((after - before) ** 2) for after, before in zip(weights, start,
                                                                                       strict=True))))

    assert moved(clipped) == pytest.approx(0.5 * 1e-3, rel=1e-3)  # PLAIN_SGD's rate 0.5
    assert moved(free) > 100 * moved(clipped)


def test_loss_falls_on_the_tiny_corpus(packed_data, tiny_config, train_steps):
    """Trained on the real input (packed shards, masked in tf.data), the tiny encoder's loss falls."""
    import dataclasses

    from beam_jobs.manifest import Manifest
    from pipeline.pretrain.input import pretraining_dataset
    from pipeline.pretrain.masking import masking_spec

    manifest = Manifest.read(packed_data)
    config = dataclasses.replace(tiny_config, pretrain=dataclasses.replace(
        tiny_config.pretrain, learning_rate=2e-3, warmup_fraction=0.0, jit_compile=False))
    dataset = pretraining_dataset(manifest, 16, 0, 256, masking_spec(config, manifest, manifest.seq_len))
    losses = train_steps(config, dataset, 40, 16).losses
    assert np.mean(losses[-8:]) < np.mean(losses[:4]) - 1.0, losses
