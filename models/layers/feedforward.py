"""The position-wise feed-forward sub-layer H -> I -> H (the part TrimBERT removes)."""

from __future__ import annotations

import keras

from models.layers.dropout import Dropout
from models.layers.fused import gelu_exact
from models.layers.initializers import bert_initializer

ACTIVATIONS = {
    "gelu": gelu_exact,
    "gelu_approximate": lambda x: keras.activations.gelu(x, approximate=True),
    "relu": keras.activations.relu,
}


@keras.saving.register_keras_serializable(package="trimbert")
class FeedForward(keras.layers.Layer):
    """dense H -> I, activation, dense I -> H, dropout.

    Args:
        hidden_dim: model width H.
        intermediate_dim: inner width I.
        activation: ``gelu`` (exact, BERT's), ``gelu_approximate`` (tanh form,
            what keras-hub's BertBackbone uses) or ``relu``.
        dropout: dropout rate on the output.
    """

    def __init__(self, hidden_dim: int, intermediate_dim: int, activation: str = "gelu",
                 dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.dropout = dropout
        self.intermediate_dense = keras.layers.Dense(
            intermediate_dim, activation=ACTIVATIONS[activation], kernel_initializer=bert_initializer(),
            dtype=self.dtype_policy, name="intermediate_dense")
        self.output_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=bert_initializer(), dtype=self.dtype_policy, name="output_dense")
        self.dropout_layer = Dropout(
            dropout, dtype=self.dtype_policy, name="feedforward_dropout")

    def build(self, inputs_shape):
        self.intermediate_dense.build(inputs_shape)
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def call(self, inputs, training=None):
        hidden = self.intermediate_dense(inputs)  # [B, T, I]
        outputs = self.output_dense(hidden)  # [B, T, H]
        return self.dropout_layer(outputs, training=training)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "activation": self.activation,
            "dropout": self.dropout,
        })
        return config
