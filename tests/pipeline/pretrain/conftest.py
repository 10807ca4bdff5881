"""Pre-training fixtures: the train step driven directly (the root conftest splits the CPU in two for replicas).

The step's arithmetic (replicas, gradient accumulation, loss scaling, clipping, XLA) is tested by
calling ``pipeline.pretrain.step.make_train_step`` on fixed batches, set up as section 2 of
``pipeline.pretrain.loop`` does it, instead of through whole pre-training runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

# Plain SGD, no clipping, constant rate, no dropout, no weight decay: the update is rate x gradient,
# so a constant factor on the gradient (a sum taken as a mean, a division by replicas or micro-batches
# done twice or not at all) moves the weights by that factor. AdamW divides the gradient by the root
# of its own second moment, so the factor cancels (exactly on the first step), and clipping to norm 1
# also hides it whenever the gradient norm exceeds 1: equivalence tests under those settings cannot fail.
# The rate is large so that a step moves the weights far beyond the comparison tolerance.
PLAIN_SGD = {"pretrain.optimizer": "sgd", "pretrain.clip_norm": "null", "pretrain.learning_rate": 0.5,
             "pretrain.decay": "constant", "pretrain.warmup_fraction": 0.0, "pretrain.weight_decay": 0.0,
             "model.dropout": 0.0}
# A small vocabulary and short sequences: the step's maths at a fraction of the tiny model's cost.
LENGTH, PREDICTIONS, VOCABULARY = 16, 3, 200
STEP_MODEL = [f"model.vocabulary_size={VOCABULARY}", f"model.max_sequence_length={LENGTH}", f"data.seq_len={LENGTH}",
              "model.num_layers=1", "model.hidden_dim=32", "model.num_heads=2", "model.intermediate_dim=64",
              "pretrain.next_sentence=false", "pretrain.jit_compile=false", "pretrain.warmup_fraction=0.0"]


def _fixed_batches(count: int, batch_size: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """``count`` different random global batches of masked-LM inputs and labels over the small vocabulary."""
    assert 5 + 7 * (LENGTH - 1) < VOCABULARY
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        positions = np.sort(np.stack([rng.choice(np.arange(1, LENGTH), PREDICTIONS, replace=False)
                                      for _ in range(batch_size)]), axis=1)
        inputs = {"token_ids": rng.integers(5, VOCABULARY, (batch_size, LENGTH)).astype(np.int32),
                  "segment_ids": np.zeros((batch_size, LENGTH), np.int32),
                  "padding_mask": np.ones((batch_size, LENGTH), np.int32),
                  "mask_positions": positions.astype(np.int32)}
        weights = np.ones((batch_size, PREDICTIONS), np.float32)
        weights[::2, -1] = 0.0  # some padded prediction slots: the global count of masked tokens matters
        # The label is a function of the masked position, so the loss can fall from batch to batch.
        labels = {"masked_lm_ids": (5 + 7 * positions).astype(np.int32),
                  "masked_lm_weights": weights, "next_sentence_labels": np.zeros((batch_size, 1), np.int32)}
        batches.append((inputs, labels))
    return batches


@dataclasses.dataclass
class Trained:
    """What a few driven steps left: each step's reduced metrics, the weights, the model and optimizer."""

    metrics: list[dict[str, float]]
    weights: list[np.ndarray]
    model: object
    optimizer: object

    @property
    def losses(self) -> list[float]:
        return [step["loss"] for step in self.metrics]


def _train_steps(config, dataset, steps: int, global_batch: int, strategy=None, accumulation: int = 1,
                jit_update: bool = False) -> Trained:
    """Runs ``steps`` of the pre-training step on ``dataset`` (global batches), built as the loop builds it.

    Args:
        config: its model, trim and pretrain sections (optimizer, precision, XLA, clipping) are used.
        dataset: a ``tf.data.Dataset`` of (inputs, labels) global batches; split over the replicas.
        steps: optimizer steps.
        global_batch: examples per step over all replicas.
        strategy: one CPU device unless given.
        accumulation: micro-batches per replica and step.
        jit_update: as ``make_train_step``'s; off unless asked (the loop's default on one replica), since
            compiling it costs seconds and test_step_arithmetic shows it trains as the plain update.
    """
    import keras
    import tensorflow as tf

    import models
    from pipeline.pretrain import loop
    from pipeline.pretrain.optimizer import pretraining_optimizer
    from pipeline.pretrain.step import make_train_step

    keras.backend.clear_session()
    strategy = strategy or tf.distribute.OneDeviceStrategy("/cpu:0")
    keras.mixed_precision.set_global_policy(loop.PRECISION_POLICIES[config.pretrain.mixed_precision])
    try:
        keras.utils.set_random_seed(config.pretrain.seed)  # same initial weights on every strategy
        with strategy.scope():
            model = models.build_pretraining_model(models.build_encoder(config), next_sentence=False)
            optimizer = pretraining_optimizer(config.pretrain)
            optimizer.build(model.trainable_variables)
            step = tf.Variable(0, dtype=tf.int64, trainable=False)
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        train_step = make_train_step(strategy, model, None, optimizer, step, config, global_batch, accumulation,
                                     False, jit_update=jit_update)
        metrics = [{name: float(value) for name, value in train_step(iterator).items()} for _ in range(steps)]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert int(step.numpy()) == steps
    return Trained(metrics, [np.array(v.numpy(), dtype=np.float32) for v in model.trainable_variables], model,
                   optimizer)


@pytest.fixture(scope="session")
def step_config():
    """``(**{"section.field": value}) -> Config``: the small step model with the given overrides."""
    from configs import schema as config_lib

    return lambda **extra: config_lib.load("tiny", STEP_MODEL + [f"{key}={value}" for key, value in extra.items()])


@pytest.fixture(scope="session")
def plain_sgd():
    """:data:`PLAIN_SGD`: overrides under which a constant factor on the gradient shows in the weights."""
    return dict(PLAIN_SGD)


@pytest.fixture(scope="session")
def fixed_dataset():
    """``(count, global_batch) -> tf.data.Dataset``: ``count`` different fixed global batches, in order."""

    def dataset(count: int, global_batch: int):
        import tensorflow as tf

        inputs, labels = zip(*_fixed_batches(count, global_batch), strict=True)
        stacked = ({name: np.concatenate([batch[name] for batch in inputs]) for name in inputs[0]},
                   {name: np.concatenate([batch[name] for batch in labels]) for name in labels[0]})
        return tf.data.Dataset.from_tensor_slices(stacked).batch(global_batch)

    return dataset


@pytest.fixture(scope="session")
def train_steps():
    """:func:`_train_steps`: ``(config, dataset, steps, global_batch, strategy=None, accumulation=1,
    jit_update=False) -> Trained``."""
    return _train_steps
