"""The trimmable BERT encoder: a functional Keras model with keras-hub's inputs and outputs.

inputs  {"token_ids": [B, T] int32, "segment_ids": [B, T] int32, "padding_mask": [B, T] int32}
outputs {"sequence_output": [B, T, H], "pooled_output": [B, H]}

These are the names keras-hub's ``BertBackbone`` uses, so one can stand in for the other.
Every trim is a field of the config the encoder is built from (``configs.schema.TrimConfig``);
there is one encoder class, never a forked one per trim.
"""

from __future__ import annotations

from typing import Any

import keras

from configs.schema import Config, ModelConfig, TrimConfig, build_section, section_to_dict
from models.layers.block import TransformerBlock
from models.layers.embeddings import BertEmbeddings
from models.layers.initializers import bert_initializer


def sections_from_dict(model_config: dict[str, Any], trim_config: dict[str, Any]) -> tuple[ModelConfig, TrimConfig]:
    """Validated model and trim sections from plain data (a saved Keras config or export), via the config system."""
    model = build_section(ModelConfig, model_config, "model", "encoder config")
    model.validate("encoder config")
    trim = build_section(TrimConfig, trim_config, "trim", "encoder config")
    trim.validate("encoder config", model.num_layers)
    return model, trim


@keras.saving.register_keras_serializable(package="trimbert")
class Encoder(keras.Model):
    """BERT encoder with TrimBERT, Poor Man's BERT and Bort knobs; see ``models.build_encoder``.

    Blocks are named ``transformer_layer_{i}`` with ``i`` counting the blocks that remain
    after ``trim.drop_layers``; ``source_blocks[i]`` is the source index of block ``i``.
    Without a pooler (``model.use_pooler: false``) ``pooled_output`` is the [CLS] vector.

    The sections are taken as given, already validated by the config system; they become
    plain dicts only in the Keras-serialized form (``get_config`` / ``from_config``).

    Args:
        model_config: the validated ``model`` section.
        trim_config: the validated ``trim`` section.
    """

    def __init__(self, model_config: ModelConfig, trim_config: TrimConfig, **kwargs):
        model, trim = model_config, trim_config
        embedding_dim = model.embedding_dim or model.hidden_dim

        # === Layers ===
        embeddings = BertEmbeddings(
            vocabulary_size=model.vocabulary_size, max_sequence_length=model.max_sequence_length,
            num_segments=model.num_segments, embedding_dim=embedding_dim, hidden_dim=model.hidden_dim,
            dropout=model.dropout, layer_norm_epsilon=model.layer_norm_epsilon, name="embeddings")
        source_blocks = trim.kept_blocks(model.num_layers)
        blocks = [
            TransformerBlock(
                num_heads=model.num_heads, hidden_dim=model.hidden_dim,
                intermediate_dim=model.intermediate_dim,
                attention_normalizer=trim.attention_normalizer,
                use_feedforward=trim.keeps("ffn_blocks", source),
                use_attention_layernorm=trim.keeps("attention_layernorm_blocks", source),
                use_feedforward_layernorm=trim.keeps("ffn_layernorm_blocks", source),
                activation=model.activation, dropout=model.dropout,
                layer_norm_epsilon=model.layer_norm_epsilon, name=f"transformer_layer_{position}")
            for position, source in enumerate(source_blocks)]
        pooler = None
        if model.use_pooler:
            pooler = keras.layers.Dense(
                model.hidden_dim, activation="tanh", kernel_initializer=bert_initializer(),
                name="pooled_dense")

        # === Functional model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        segment_ids = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        hidden = embeddings(token_ids, segment_ids)  # [B, T, H]
        for block in blocks:
            hidden = block(hidden, padding_mask)  # [B, T, H]
        first_token = hidden[:, 0, :]  # [B, H], the [CLS] position
        pooled = pooler(first_token) if pooler is not None else first_token
        super().__init__(
            inputs={"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            outputs={"sequence_output": hidden, "pooled_output": pooled},
            **kwargs)

        # === Config ===
        self.model_config = model
        self.trim_config = trim
        self.source_blocks = source_blocks
        self.embeddings = embeddings
        self.blocks = blocks
        self.pooler = pooler

    @property
    def token_embedding(self) -> keras.layers.Embedding:
        """The token embedding layer (V x E) the masked-LM head ties its output to."""
        return self.embeddings.token_embedding

    def to_config(self, name: str | None = None) -> Config:
        """The :class:`configs.schema.Config` this encoder was built from (model and trim)."""
        return Config(name=name or self.name, model=self.model_config, trim=self.trim_config)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "model_config": section_to_dict(self.model_config),
            "trim_config": section_to_dict(self.trim_config),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model, trim = sections_from_dict(config.pop("model_config"), config.pop("trim_config"))
        return cls(model_config=model, trim_config=trim, **config)
