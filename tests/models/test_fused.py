"""The hand-written gradients of models.layers.fused agree with autodiff of the ops they replace."""

import numpy as np
import pytest
import tensorflow as tf

from models.layers.fused import gelu_exact, tied_logits


def _value_and_gradient(function, *arguments, upstream):
    with tf.GradientTape() as tape:
        tape.watch(arguments)
        outputs = function(*arguments)
    return outputs, tape.gradient(outputs, arguments, output_gradients=upstream)


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_gelu_exact_matches_tensorflow_gelu_and_its_gradient(jit):
    x = tf.constant(np.linspace(-12.0, 12.0, 4001, dtype=np.float32).reshape(1, -1))
    upstream = tf.constant(np.random.default_rng(0).normal(size=x.shape).astype(np.float32))
    ours = tf.function(lambda x: _value_and_gradient(gelu_exact, x, upstream=upstream), jit_compile=jit)(x)
    reference = _value_and_gradient(lambda x: tf.nn.gelu(x, approximate=False), x, upstream=upstream)
    # XLA's erf is ~1 ulp off 1 - erf far in the negative tail: gelu(-12) comes out -1.07e-6, not ~0.
    atol = 2e-6 if jit else 1e-6
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-6, atol=atol)
    np.testing.assert_allclose(ours[1][0], reference[1][0], rtol=1e-5, atol=atol)
    # Not the tanh approximation, which differs by ~1e-4 near |x| = 2.
    assert np.max(np.abs(ours[0] - tf.nn.gelu(x, approximate=True))) > 1e-4


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_tied_logits_match_the_transposed_matmul_and_its_gradients(jit):
    rng = np.random.default_rng(1)
    hidden = tf.constant(rng.normal(size=(3, 5, 16)).astype(np.float32))
    embeddings = tf.constant(rng.normal(size=(50, 16)).astype(np.float32))
    bias = tf.constant(rng.normal(size=(50,)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(3, 5, 50)).astype(np.float32))

    def reference_logits(hidden, embeddings, bias):
        return tf.matmul(hidden, tf.transpose(embeddings)) + bias

    ours = tf.function(lambda *a: _value_and_gradient(tied_logits, *a, upstream=upstream), jit_compile=jit)(
        hidden, embeddings, bias)
    reference = _value_and_gradient(reference_logits, hidden, embeddings, bias, upstream=upstream)
    assert ours[0].shape == (3, 5, 50)
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-5, atol=1e-5)
    for got, expected in zip(ours[1], reference[1], strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
