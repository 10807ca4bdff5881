"""Poor Man's BERT: drop whole transformer blocks from a pre-trained encoder (Sajjad et al. 2022).

Strategies, for an encoder of D blocks and K blocks to drop (indices 0-based, 0 = bottom):

    top             drop D-K .. D-1 (the paper's best strategy)
    bottom          drop 0 .. K-1 (the paper's worst)
    alternate-even  drop the K highest even indices (e.g. D=12, K=4: 10, 8, 6, 4)
    alternate-odd   drop the K highest odd indices (e.g. D=12, K=4: 11, 9, 7, 5)
    symmetric       keep the top and bottom, drop K from the middle (D=12, K=4: 4..7)
    contribution    drop the K blocks whose output is most similar to their input
                    (mean cosine over real tokens of sample text): they change the
                    representation least
    indices         drop exactly the given indices (their released code's convention,
                    e.g. 9,10,11 = top three of 12)

Kept blocks keep their exact weights; embeddings and pooler are copied unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from configs.errors import TrimbertError
from models.build import build_encoder, compact_config
from models.encoder import Encoder
from models.params import count_parameters

STRATEGIES = ("top", "bottom", "alternate-even", "alternate-odd", "symmetric", "contribution", "indices")


def _top(num_layers: int, drop: int) -> list[int]:
    return list(range(num_layers - drop, num_layers))


def _bottom(num_layers: int, drop: int) -> list[int]:
    return list(range(drop))


def _alternate(parity: int) -> Callable[[int, int], list[int]]:
    def choose(num_layers: int, drop: int) -> list[int]:
        candidates = [index for index in reversed(range(num_layers)) if index % 2 == parity]
        if drop > len(candidates):
            raise TrimbertError(f"cannot drop {drop} {'even' if parity == 0 else 'odd'}-indexed blocks "
                                f"of {num_layers}: there are only {len(candidates)}")
        return candidates[:drop]
    return choose


def _symmetric(num_layers: int, drop: int) -> list[int]:
    start = (num_layers - drop) // 2
    return list(range(start, start + drop))


_POSITIONAL = {"top": _top, "bottom": _bottom, "alternate-even": _alternate(0),
               "alternate-odd": _alternate(1), "symmetric": _symmetric}


def layers_to_drop(strategy: str, num_layers: int, drop: int | None,
                   indices: Sequence[int] | None = None,
                   similarities: Sequence[float] | None = None) -> tuple[int, ...]:
    """The sorted block indices a strategy removes.

    Args:
        strategy: one of ``STRATEGIES``.
        num_layers: blocks in the encoder (D).
        drop: how many to remove (K, 1 <= K < D); for ``indices`` it may be None.
        indices: the blocks to remove, for ``indices``.
        similarities: per-block mean input/output cosine, for ``contribution``.
    """
    if strategy not in STRATEGIES:
        raise TrimbertError(f"unknown prune strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "indices":
        if not indices:
            raise TrimbertError("strategy 'indices' needs --indices, e.g. 9,10,11")
        if drop is not None and drop != len(indices):
            raise TrimbertError(f"--drop {drop} disagrees with {len(indices)} --indices {list(indices)}")
        drop = len(indices)
    if drop is None or not 1 <= drop < num_layers:
        raise TrimbertError(f"--drop must be between 1 and {num_layers - 1} for a "
                            f"{num_layers}-block encoder, got {drop}")
    if strategy == "indices":
        bad = [index for index in indices if not 0 <= index < num_layers]
        if bad or len(set(indices)) != len(indices):
            raise TrimbertError(f"--indices {list(indices)}: must be distinct and within 0..{num_layers - 1}")
        chosen = list(indices)
    elif strategy == "contribution":
        if similarities is None or len(similarities) != num_layers:
            raise TrimbertError("strategy 'contribution' needs one similarity per block (pass sample text)")
        # Most similar first; a stable sort breaks ties towards the lower index.
        order = np.argsort(-np.asarray(similarities, dtype=np.float64), kind="stable")
        chosen = [int(index) for index in order[:drop]]
    else:
        chosen = _POSITIONAL[strategy](num_layers, drop)
    return tuple(sorted(chosen))


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
          sample_inputs: Mapping[str, np.ndarray] | None = None) -> PruneResult:
    """Drops K blocks from a pre-trained encoder by a Poor Man's BERT strategy.

    Args:
        encoder: the pre-trained encoder.
        strategy: one of ``STRATEGIES`` (module docstring).
        drop: number of blocks to remove (K).
        indices: blocks to remove, for ``indices``.
        sample_inputs: encoder inputs of sample text, for ``contribution``
            (see ``models.sample_text.encode_texts``).
    """
    num_layers = len(encoder.blocks)
    similarities = None
    if strategy == "contribution":
        if sample_inputs is None:
            raise TrimbertError("strategy 'contribution' needs sample text (--sample FILE)")
        similarities = layer_similarities(encoder, sample_inputs)
    dropped = layers_to_drop(strategy, num_layers, drop, indices, similarities)
    pruned = drop_blocks(encoder, dropped)
    kept = tuple(index for index in range(num_layers) if index not in dropped)
    return PruneResult(
        encoder=pruned, dropped=dropped, kept=kept,
        parameters_before=count_parameters(compact_config(encoder.to_config())).total,
        parameters_after=count_parameters(pruned.to_config()).total,
        similarities=None if similarities is None else tuple(float(value) for value in similarities))
