"""Two hot spots of pre-training with hand-written gradients: the same maths, fewer and cheaper ops.

``gelu_exact``: BERT's GELU, ``x * Phi(x)``. TensorFlow's ``tf.nn.gelu(approximate=False)`` uses
``erfc``, which Eigen does not vectorise on CPU, and its autodiff gradient re-derives the CDF; here
the forward uses ``erf`` and the gradient reuses the forward's CDF:
d/dx [x Phi(x)] = Phi(x) + x phi(x).

``tied_logits``: the masked-LM output ``h E^T + b`` with E the [V, D] token embedding. Autodiff
through ``matmul(h, transpose(E))`` builds the embedding's gradient as [D, V] and transposes it;
here it is one matmul straight to [V, D]: dE = g^T h.

benchmarks/pretrain_profile.py times both against the ops they replace.
"""

from __future__ import annotations

import math

import tensorflow as tf

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@tf.custom_gradient
def gelu_exact(x):
    """x * Phi(x), Phi the standard normal CDF (BERT's GELU, not the tanh approximation)."""
    cdf = 0.5 * (1.0 + tf.math.erf(x * _INV_SQRT2))

    def gradient(upstream):
        density = tf.exp(-0.5 * tf.square(x)) * _INV_SQRT_2PI
        return upstream * (cdf + x * density)

    return x * cdf, gradient


@tf.custom_gradient
def tied_logits(hidden, embeddings, bias):
    """``hidden @ embeddings^T + bias``: hidden [..., D], embeddings [V, D], bias [V] -> [..., V]."""
    width = tf.shape(hidden)[-1]
    flat = tf.reshape(hidden, [-1, width])  # [N, D]
    logits = tf.nn.bias_add(tf.matmul(flat, embeddings, transpose_b=True), bias)  # [N, V]
    output_shape = tf.concat([tf.shape(hidden)[:-1], tf.shape(embeddings)[:1]], axis=0)
    outputs = tf.reshape(logits, output_shape)
    outputs.set_shape(hidden.shape[:-1].concatenate(embeddings.shape[:1]))

    def gradient(upstream):
        upstream = tf.reshape(upstream, tf.shape(logits))  # [N, V]
        hidden_gradient = tf.reshape(tf.matmul(upstream, embeddings), tf.shape(hidden))  # [..., D]
        embeddings_gradient = tf.matmul(upstream, flat, transpose_a=True)  # [V, D]
        return hidden_gradient, embeddings_gradient, tf.reduce_sum(upstream, axis=0)

    return outputs, gradient
