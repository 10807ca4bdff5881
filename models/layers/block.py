"""One post-layernorm transformer block whose feed-forward and layernorms can be trimmed."""

from __future__ import annotations

import keras

from models.layers.attention import TrimmedSelfAttention
from models.layers.dropout import Dropout
from models.layers.feedforward import FeedForward


@keras.saving.register_keras_serializable(package="trimbert")
class TransformerBlock(keras.layers.Layer):
    """BERT's block with TrimBERT's per-block switches.

        x = x + dropout(attention(x));  x = layernorm(x)   if use_attention_layernorm
        x = x + feedforward(x);         x = layernorm(x)   if use_feedforward_layernorm
                                                            (both only if use_feedforward)

    A block without a feed-forward sub-layer has no post-feed-forward layernorm either.

    Args:
        num_heads: attention heads A.
        hidden_dim: model width H.
        intermediate_dim: feed-forward width I.
        attention_normalizer: ``softmax``, ``relu``, ``relu_sum`` or ``sigmoid``.
        use_feedforward: keep the feed-forward sub-layer.
        use_attention_layernorm: keep the post-attention layernorm.
        use_feedforward_layernorm: keep the post-feed-forward layernorm.
        activation: feed-forward activation (``gelu``, ``gelu_approximate``, ``relu``).
        dropout: dropout rate of attention weights and sub-layer outputs.
        layer_norm_epsilon: epsilon of both layernorms.
    """

    def __init__(self, num_heads: int, hidden_dim: int, intermediate_dim: int,
                 attention_normalizer: str = "softmax", use_feedforward: bool = True,
                 use_attention_layernorm: bool = True, use_feedforward_layernorm: bool = True,
                 activation: str = "gelu", dropout: float = 0.1, layer_norm_epsilon: float = 1e-12,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.attention_normalizer = attention_normalizer
        self.use_feedforward = use_feedforward
        self.use_attention_layernorm = use_attention_layernorm
        self.use_feedforward_layernorm = use_feedforward_layernorm
        self.activation = activation
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.self_attention = TrimmedSelfAttention(
            num_heads, hidden_dim, attention_normalizer, dropout, dtype=self.dtype_policy,
            name="self_attention")
        self.attention_dropout = Dropout(
            dropout, dtype=self.dtype_policy, name="attention_output_dropout")
        self.attention_layernorm = None
        if use_attention_layernorm:
            self.attention_layernorm = keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="attention_layer_norm")
        self.feedforward = None
        self.feedforward_layernorm = None
        if use_feedforward:
            self.feedforward = FeedForward(
                hidden_dim, intermediate_dim, activation, dropout, dtype=self.dtype_policy,
                name="feedforward")
            if use_feedforward_layernorm:
                self.feedforward_layernorm = keras.layers.LayerNormalization(
                    epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="feedforward_layer_norm")

    def build(self, inputs_shape, padding_mask_shape=None):
        self.self_attention.build(inputs_shape)
        for layer in (self.attention_layernorm, self.feedforward, self.feedforward_layernorm):
            if layer is not None:
                layer.build(inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask, training=None):
        attended = self.self_attention(inputs, padding_mask, training=training)  # [B, T, H]
        hidden = inputs + self.attention_dropout(attended, training=training)  # [B, T, H]
        if self.attention_layernorm is not None:
            hidden = self.attention_layernorm(hidden)
        if self.feedforward is not None:
            hidden = hidden + self.feedforward(hidden, training=training)  # [B, T, H]
            if self.feedforward_layernorm is not None:
                hidden = self.feedforward_layernorm(hidden)
        return hidden

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "attention_normalizer": self.attention_normalizer,
            "use_feedforward": self.use_feedforward,
            "use_attention_layernorm": self.use_attention_layernorm,
            "use_feedforward_layernorm": self.use_feedforward_layernorm,
            "activation": self.activation,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        })
        return config
