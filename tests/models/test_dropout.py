"""models.layers.dropout: ThreeFry masks under XLA, Keras's dropout elsewhere, one seed per call either way."""

import numpy as np
import tensorflow as tf

from models.layers.dropout import Dropout, in_xla_compilation

RATE = 0.25


def test_in_xla_compilation_only_while_tracing_for_xla():
    seen = {}

    def probe(name):
        seen[name] = in_xla_compilation()
        return tf.constant(0.0)

    tf.function(lambda: probe("xla"), jit_compile=True)()
    tf.function(lambda: probe("graph"))()
    probe("eager")
    assert seen == {"xla": True, "graph": False, "eager": False}


def test_under_xla_the_mask_is_threefry_from_the_layers_seed():
    inputs = tf.ones((64, 256))
    layer = Dropout(RATE, seed=7)
    layer.build(inputs.shape)
    state = layer.seed_generator.state.numpy().copy()
    compiled = tf.function(lambda x: layer(x, training=True), jit_compile=True)(inputs).numpy()

    # Independent reference: the seed Keras's SeedGenerator hands out for that state, folded to int32.
    reference_layer = Dropout(RATE, seed=7)
    reference_layer.build(inputs.shape)
    reference_layer.seed_generator.state.assign(state)
    seed = tf.cast(tf.math.floormod(reference_layer.seed_generator.next(), tf.int32.max - 1), tf.int32)
    # The layer drew exactly one seed, as Keras's dropout does: its state is the reference's after one draw.
    assert not np.array_equal(layer.seed_generator.state.numpy(), state)
    np.testing.assert_array_equal(layer.seed_generator.state.numpy(), reference_layer.seed_generator.state.numpy())
    expected = tf.function(lambda x: tf.nn.experimental.stateless_dropout(
        x, rate=RATE, seed=seed, rng_alg="threefry"), jit_compile=True)(inputs).numpy()
    np.testing.assert_array_equal(compiled, expected)
    kept = compiled != 0
    np.testing.assert_allclose(compiled[kept], 1.0 / (1.0 - RATE), rtol=1e-6)
    assert abs(kept.mean() - (1.0 - RATE)) < 0.01

    # Keras's own dropout from the same seed, compiled, gives other masks: the branch above was taken.
    keras_layer = tf.keras.layers.Dropout(RATE, seed=7)
    keras_layer.build(inputs.shape)
    keras_layer.seed_generator.state.assign(state)
    keras_masks = tf.function(lambda x: keras_layer(x, training=True), jit_compile=True)(inputs).numpy()
    assert not np.array_equal(keras_masks, compiled)


def test_outside_xla_it_is_keras_dropout():
    inputs = tf.ones((16, 32))
    ours, theirs = Dropout(RATE, seed=3), tf.keras.layers.Dropout(RATE, seed=3)
    for layer in (ours, theirs):
        layer.build(inputs.shape)
    np.testing.assert_array_equal(tf.function(lambda x: ours(x, training=True))(inputs),
                                  tf.function(lambda x: theirs(x, training=True))(inputs))
    np.testing.assert_array_equal(ours(inputs, training=False), inputs)
