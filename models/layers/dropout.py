"""Dropout whose masks come from ThreeFry when XLA compiles the step.

``keras.layers.Dropout`` draws its masks with TensorFlow's default stateless algorithm. Inside an
XLA-compiled step (``pretrain.jit_compile``) on this project's CPU, ThreeFry made the whole step
1.13x faster at tiny and mini (docs/pretrain_speed.md). TensorFlow's own CPU kernels have no
ThreeFry, so outside XLA the layer is Keras's. The seed generator, its checkpointed state and the
one seed drawn per call are Keras's either way; only the bits drawn from a seed differ.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # TensorFlow's own test for tracing under XLA


def in_xla_compilation() -> bool:
    """True while a function compiled by XLA (``tf.function(jit_compile=True)``) is being traced."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@keras.saving.register_keras_serializable(package="trimbert")
class Dropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` with ThreeFry masks under XLA (module docstring)."""

    def call(self, inputs, training=False):
        if not (training and 0 < self.rate < 1 and self.noise_shape is None and in_xla_compilation()):
            return super().call(inputs, training=training)
        # As Keras's TensorFlow backend does: the int64 seed state folded into int32 for XLA.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        return tf.nn.experimental.stateless_dropout(inputs, rate=self.rate, seed=seed, rng_alg="threefry")
