"""Analytic parameter counts and FLOPs per token for any (trimmed) encoder config.

These are computed from the config alone, without building a model, so search
and ``trimbert config show`` are instant. The encoder tests check that every
shipped config's analytic count equals the built Keras model's count.

BERT-Base check (docs/papers.md): each FFN 4,722,432, each attention
2,362,368, the whole encoder with pooler 109,482,240.
"""

from __future__ import annotations

import dataclasses

from configs.schema import Config


@dataclasses.dataclass(frozen=True)
class ParameterCount:
    """Parameters of the encoder by part; ``total`` is the encoder with pooler."""

    embeddings: int
    blocks: tuple[int, ...]
    pooler: int

    @property
    def total(self) -> int:
        return self.embeddings + sum(self.blocks) + self.pooler


def embedding_parameters(config: Config) -> int:
    model = config.model
    width = model.embedding_dim or model.hidden_dim
    count = (model.vocabulary_size + model.max_sequence_length + model.num_segments) * width
    count += 2 * width  # embedding layernorm (gamma, beta)
    if width != model.hidden_dim:
        count += width * model.hidden_dim + model.hidden_dim  # projection E -> H
    return count


def attention_parameters(hidden_dim: int) -> int:
    """Query, key, value and output projections, each H x H plus a bias."""
    return 4 * (hidden_dim * hidden_dim + hidden_dim)


def feedforward_parameters(hidden_dim: int, intermediate_dim: int) -> int:
    """H -> I -> H with biases."""
    return 2 * hidden_dim * intermediate_dim + intermediate_dim + hidden_dim


def block_parameters(config: Config, block: int) -> int:
    """Parameters of source block ``block`` after the trims that apply to it."""
    model, trim = config.model, config.trim
    count = attention_parameters(model.hidden_dim)
    if trim.keeps("attention_layernorm_blocks", block):
        count += 2 * model.hidden_dim
    if trim.keeps("ffn_blocks", block):
        count += feedforward_parameters(model.hidden_dim, model.intermediate_dim)
        if trim.keeps("ffn_layernorm_blocks", block):
            count += 2 * model.hidden_dim
    return count


def count_parameters(config: Config) -> ParameterCount:
    """Exact parameter count of the encoder that ``models.build_encoder`` makes."""
    model = config.model
    blocks = tuple(block_parameters(config, b) for b in config.trim.kept_blocks(model.num_layers))
    pooler = model.hidden_dim * model.hidden_dim + model.hidden_dim if model.use_pooler else 0
    return ParameterCount(embedding_parameters(config), blocks, pooler)


def masked_lm_head_parameters(config: Config) -> int:
    """Masked-LM head: dense transform H -> E, layernorm, output bias (V).

    The output weights are tied to the token embedding (V x E), so they are
    not counted again; for BERT E = H.
    """
    model = config.model
    width = model.embedding_dim or model.hidden_dim
    return model.hidden_dim * width + width + 2 * width + model.vocabulary_size


def flops_per_token(config: Config, seq_len: int) -> int:
    """Forward FLOPs per token (multiply-add = 2 FLOPs), nanoGPT-style estimate.

    Counts the matrix multiplies: projections, feed-forward, attention scores
    (Q K^T) and the weighted sum of values, each 2 * seq_len * H per token per
    block, plus the embedding projection and the pooler is ignored (one token).
    Embedding look-ups, layernorms, softmax and biases are left out: they are
    a small fraction at H >= 128.
    """
    model, trim = config.model, config.trim
    hidden = model.hidden_dim
    width = model.embedding_dim or hidden
    flops = 2 * width * hidden if width != hidden else 0
    for block in trim.kept_blocks(model.num_layers):
        flops += 2 * 4 * hidden * hidden  # Q, K, V, output projections
        flops += 2 * 2 * seq_len * hidden  # scores and weighted values
        if trim.keeps("ffn_blocks", block):
            flops += 2 * 2 * hidden * model.intermediate_dim
    return flops
