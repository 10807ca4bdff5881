"""Poor Man's BERT: drop whole transformer blocks from a pre-trained encoder (Sajjad et al. 2022).

Which blocks go is :mod:`models.drop_rules`' business (top, bottom, alternate, symmetric,
contribution, indices); this module measures the block similarities the contribution rule reads
and builds the smaller encoder. Kept blocks keep their exact weights; embeddings and pooler are
copied unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from configs.errors import TrimbertError
from models.build import build_encoder, compact_config
from models.drop_rules import layers_to_drop
from models.encoder import Encoder
from models.params import count_parameters


def layer_similarities(encoder: Encoder, inputs: Mapping[str, np.ndarray],
                       batch_size: int = 16) -> np.ndarray:
    """Mean cosine similarity between each block's input and output over real tokens.

    Args:
        encoder: the encoder to measure (run in inference mode).
        inputs: ``token_ids``, ``segment_ids``, ``padding_mask`` arrays [N, T].
        batch_size: sequences per forward pass.

    Returns:
        float64 array [D]: the mean over all unpadded tokens of cos(x_in, x_out) per block.
    """
    totals = np.zeros(len(encoder.blocks))
    token_count = 0.0
    count = len(inputs["token_ids"])
    for start in range(0, count, batch_size):
        batch = {name: np.asarray(value[start:start + batch_size]) for name, value in inputs.items()}
        mask = batch["padding_mask"].astype(np.float64)  # [B, T]
        hidden = encoder.embeddings(batch["token_ids"], batch["segment_ids"], training=False)  # [B, T, H]
        for index, block in enumerate(encoder.blocks):
            output = block(hidden, batch["padding_mask"], training=False)  # [B, T, H]
            before, after = np.asarray(hidden, np.float64), np.asarray(output, np.float64)
            cosine = (before * after).sum(-1) / (
                np.linalg.norm(before, axis=-1) * np.linalg.norm(after, axis=-1) + 1e-12)  # [B, T]
            totals[index] += float((cosine * mask).sum())
            hidden = output
        token_count += float(mask.sum())
    if token_count == 0:
        raise TrimbertError("the sample has no real tokens to measure block contributions on")
    return totals / token_count


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did.

    Args:
        encoder: the pruned encoder (compact: blocks renumbered 0..D'-1).
        dropped: indices of the removed blocks in the source encoder.
        kept: indices of the kept blocks in the source encoder, bottom to top.
        parameters_before: source encoder parameters.
        parameters_after: pruned encoder parameters.
        similarities: per-block mean cosine (``contribution`` only).
    """

    encoder: Encoder
    dropped: tuple[int, ...]
    kept: tuple[int, ...]
    parameters_before: int
    parameters_after: int
    similarities: tuple[float, ...] | None = None


def drop_blocks(encoder: Encoder, dropped: Sequence[int], name: str | None = None) -> Encoder:
    """A new encoder without the given blocks; every remaining weight copied exactly.

    Args:
        encoder: the source encoder; indices count its blocks from 0 (bottom).
        dropped: block indices to remove.
        name: Keras name of the result (default: the source's).
    """
    source_config = compact_config(encoder.to_config())
    trim = dataclasses.replace(source_config.trim, drop_layers=tuple(sorted(dropped)))
    source_config.trim.validate("prune", source_config.model.num_layers)
    trim.validate("prune", source_config.model.num_layers)
    kept = trim.kept_blocks(source_config.model.num_layers)
    pruned = build_encoder(compact_config(dataclasses.replace(source_config, trim=trim)),
                           name=name or encoder.name)
    pruned.embeddings.set_weights(encoder.embeddings.get_weights())
    for position, source in enumerate(kept):
        pruned.blocks[position].set_weights(encoder.blocks[source].get_weights())
    if encoder.pooler is not None:
        pruned.pooler.set_weights(encoder.pooler.get_weights())
    return pruned


def prune(encoder: Encoder, strategy: str, drop: int | None = None, indices: Sequence[int] | None = None,
          sample_inputs: Mapping[str, np.ndarray] | None = None, threshold: float | None = None) -> PruneResult:
    """Drops K blocks from a pre-trained encoder by a Poor Man's BERT strategy.

    Args:
        encoder: the pre-trained encoder.
        strategy: one of ``STRATEGIES`` (module docstring).
        drop: number of blocks to remove (K).
        indices: blocks to remove, for ``indices``.
        sample_inputs: encoder inputs of sample text, for ``contribution``
            (see ``models.sample_text.encode_texts``).
        threshold: for ``contribution`` instead of ``drop``: drop every block at least this
            similar to its input.
    """
    num_layers = len(encoder.blocks)
    similarities = None
    if strategy == "contribution":
        if sample_inputs is None:
            raise TrimbertError("strategy 'contribution' needs sample text (--sample FILE)")
        similarities = layer_similarities(encoder, sample_inputs)
    dropped = layers_to_drop(strategy, num_layers, drop, indices, similarities, threshold)
    pruned = drop_blocks(encoder, dropped)
    kept = tuple(index for index in range(num_layers) if index not in dropped)
    return PruneResult(
        encoder=pruned, dropped=dropped, kept=kept,
        parameters_before=count_parameters(compact_config(encoder.to_config())).total,
        parameters_after=count_parameters(pruned.to_config()).total,
        similarities=None if similarities is None else tuple(float(value) for value in similarities))
