"""Optimizers and learning-rate schedules for pre-training and fine-tuning.

AdamW or LAMB with weight decay kept off layernorm parameters and biases (as
BERT and Bort do), or plain SGD (for tests that must see the gradient's scale),
warm-up then linear or polynomial decay, gradient clipping
by global norm, gradient accumulation, and dynamic loss scaling for float16.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from configs.schema import FinetuneConfig, PretrainConfig

# Variables whose names contain these are not decayed: biases and layernorm
# scale/offset (Keras names them gamma/beta).
NO_DECAY_NAME_PARTS = ("bias", "gamma", "beta")


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to a peak, then linear or polynomial decay to zero.

    ``lr(step) = peak(step) * shape(step)`` where ``shape`` rises linearly over
    ``warmup_steps`` and then falls as ``(1 - progress) ** power`` over the
    remaining steps (power 1 is linear; ``constant`` keeps 1). ``peak`` may
    change at phase boundaries (two-phase pre-training).

    Args:
        peak_rates: the peak rate of each phase.
        phase_boundaries: first global step of each phase after the first.
        warmup_steps: steps of linear warm-up from 0.
        total_steps: steps over which to decay to 0.
        decay: ``linear``, ``polynomial`` or ``constant``.
        power: exponent of the polynomial decay.
    """

    def __init__(self, peak_rates: list[float], phase_boundaries: list[int], warmup_steps: int,
                 total_steps: int, decay: str = "linear", power: float = 1.0):
        if len(peak_rates) != len(phase_boundaries) + 1:
            raise ValueError("one peak rate per phase is needed")
        self.peak_rates = [float(rate) for rate in peak_rates]
        self.phase_boundaries = [int(boundary) for boundary in phase_boundaries]
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = decay
        self.power = float(power) if decay == "polynomial" else 1.0

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak_rates[0], tf.float32)
        for boundary, rate in zip(self.phase_boundaries, self.peak_rates[1:], strict=True):
            peak = tf.where(step >= boundary, tf.constant(rate, tf.float32), peak)
        warmup = tf.maximum(float(self.warmup_steps), 1.0)
        rising = tf.minimum((step + 1.0) / warmup, 1.0)
        if self.decay == "constant":
            return peak * rising
        decay_span = tf.maximum(float(self.total_steps - self.warmup_steps), 1.0)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_span, 0.0, 1.0)
        falling = tf.pow(1.0 - progress, self.power)
        return peak * tf.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return {"peak_rates": self.peak_rates, "phase_boundaries": self.phase_boundaries,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "decay": self.decay, "power": self.power}


def pretraining_schedule(config: PretrainConfig) -> WarmupDecay:
    """The schedule over all phases of a pre-training config (optimizer steps)."""
    steps = [phase.steps for phase in config.phases]
    boundaries = [sum(steps[:index]) for index in range(1, len(steps))]
    rates = [phase.learning_rate or config.learning_rate for phase in config.phases]
    total = sum(steps)
    return WarmupDecay(rates, boundaries, round(config.warmup_fraction * total), total,
                       config.decay, config.decay_power)


def make_optimizer(name: str, learning_rate, weight_decay: float, epsilon: float,
                   clip_norm: float | None, mixed_precision: str = "float32") -> keras.optimizers.Optimizer:
    """AdamW, LAMB or plain SGD with decay off biases and layernorms; loss scaling for float16.

    SGD has no momentum and ignores ``epsilon``: its update is ``learning_rate x gradient``, so a
    constant factor on the gradient changes the weights (AdamW and LAMB divide it out).

    Gradient accumulation is done by the training loop, not here, so that the
    distributed all-reduce happens once per optimizer step.
    """
    common = dict(learning_rate=learning_rate, weight_decay=weight_decay, epsilon=epsilon,
                  global_clipnorm=clip_norm, beta_1=0.9, beta_2=0.999)
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(**common)
    elif name == "lamb":
        optimizer = keras.optimizers.Lamb(**common)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, weight_decay=weight_decay,
                                         global_clipnorm=clip_norm)
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAME_PARTS))
    if mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def pretraining_optimizer(config: PretrainConfig) -> keras.optimizers.Optimizer:
    """The pre-training optimizer; the training step clips the all-reduced gradient itself."""
    return make_optimizer(config.optimizer, pretraining_schedule(config), config.weight_decay,
                          config.adam_epsilon, clip_norm=None, mixed_precision=config.mixed_precision)


def finetuning_optimizer(config: FinetuneConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """The fine-tuning optimizer: AdamW, warm-up then linear decay to zero over ``total_steps``, clipped by Keras.

    Args:
        config: the learning rate, warm-up fraction, weight decay, epsilon and clip norm.
        total_steps: optimizer steps of the whole fine-tuning run.
    """
    schedule = WarmupDecay([config.learning_rate], [], round(config.warmup_fraction * total_steps), total_steps,
                           decay="linear")
    return make_optimizer("adamw", schedule, config.weight_decay, config.adam_epsilon, config.clip_norm)
