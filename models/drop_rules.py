"""Poor Man's BERT's rules for which transformer blocks to drop (Sajjad et al. 2022): plain Python, no TensorFlow.

Strategies are named as the paper names them, and the paper numbers layers 1..D from the bottom.
The code returns 0-based block indices (paper layer L is index L-1). For D blocks, K to drop:

    top             drop the top K layers (the paper's best strategy)
    bottom          drop the bottom K layers (the paper's worst)
    alternate-odd   drop K of the paper's odd layers 1, 3, 5 .., from the top down
                    (D=12, K=4: layers 11, 9, 7, 5 = indices 10, 8, 6, 4)
    alternate-even  drop K of the paper's even layers 2, 4, 6 .., from the top down
                    (D=12, K=4: layers 12, 10, 8, 6 = indices 11, 9, 7, 5)
    symmetric       keep the top and bottom, drop K from the middle (D=12, K=4: layers 5..8)
    contribution    drop the blocks whose output is most similar to their input (mean cosine
                    over real tokens of sample text): they change the representation least.
                    Either the K most similar, or, as the paper does, every block whose
                    similarity is at least a threshold
    indices         drop exactly the given 0-based indices (their released code's convention,
                    e.g. 9,10,11 = top three of 12)

"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from configs.errors import TrimbertError

STRATEGIES = ("top", "bottom", "alternate-odd", "alternate-even", "symmetric", "contribution", "indices")


def _top(num_layers: int, drop: int) -> list[int]:
    return list(range(num_layers - drop, num_layers))


def _bottom(num_layers: int, drop: int) -> list[int]:
    return list(range(drop))


def _alternate(paper_parity: str) -> Callable[[int, int], list[int]]:
    # The paper's layer L is index L-1, so its odd layers are the even indices.
    index_parity = 0 if paper_parity == "odd" else 1

    def choose(num_layers: int, drop: int) -> list[int]:
        candidates = [index for index in reversed(range(num_layers)) if index % 2 == index_parity]
        if drop > len(candidates):
            raise TrimbertError(f"cannot drop {drop} of the paper's {paper_parity} layers of {num_layers}: "
                                f"there are only {len(candidates)}")
        return candidates[:drop]
    return choose


def _symmetric(num_layers: int, drop: int) -> list[int]:
    start = (num_layers - drop) // 2
    return list(range(start, start + drop))


_POSITIONAL = {"top": _top, "bottom": _bottom, "alternate-odd": _alternate("odd"),
               "alternate-even": _alternate("even"), "symmetric": _symmetric}


def describe_positional(num_layers: int = 12, drop: int = 4) -> str:
    """Which of the paper's layers (1 = bottom) each positional strategy drops, for ``--help``."""
    return "; ".join(
        f"{name} drops {','.join(str(index + 1) for index in sorted(choose(num_layers, drop)))}"
        for name, choose in _POSITIONAL.items())


def layers_to_drop(strategy: str, num_layers: int, drop: int | None,
                   indices: Sequence[int] | None = None,
                   similarities: Sequence[float] | None = None,
                   threshold: float | None = None) -> tuple[int, ...]:
    """The sorted block indices a strategy removes.

    Args:
        strategy: one of ``STRATEGIES``.
        num_layers: blocks in the encoder (D).
        drop: how many to remove (K, 1 <= K < D); for ``indices`` it may be None.
        indices: the blocks to remove, for ``indices``.
        similarities: per-block mean input/output cosine, for ``contribution``.
        threshold: for ``contribution`` instead of ``drop``: remove every block whose
            similarity is at least this (the paper's form).
    """
    if strategy not in STRATEGIES:
        raise TrimbertError(f"unknown prune strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "indices":
        if not indices:
            raise TrimbertError("strategy 'indices' needs --indices, e.g. 9,10,11")
        if drop is not None and drop != len(indices):
            raise TrimbertError(f"--drop {drop} disagrees with {len(indices)} --indices {list(indices)}")
        drop = len(indices)
    if threshold is not None:
        return _above_threshold(strategy, num_layers, drop, similarities, threshold)
    if drop is None or not 1 <= drop < num_layers:
        raise TrimbertError(f"--drop must be between 1 and {num_layers - 1} for a "
                            f"{num_layers}-block encoder, got {drop}")
    if strategy == "indices":
        bad = [index for index in indices if not 0 <= index < num_layers]
        if bad or len(set(indices)) != len(indices):
            raise TrimbertError(f"--indices {list(indices)}: must be distinct and within 0..{num_layers - 1}")
        chosen = list(indices)
    elif strategy == "contribution":
        _check_similarities(similarities, num_layers)
        # Most similar first; a stable sort breaks ties towards the lower index.
        order = np.argsort(-np.asarray(similarities, dtype=np.float64), kind="stable")
        chosen = [int(index) for index in order[:drop]]
    else:
        chosen = _POSITIONAL[strategy](num_layers, drop)
    return tuple(sorted(chosen))


def _check_similarities(similarities: Sequence[float] | None, num_layers: int) -> None:
    if similarities is None or len(similarities) != num_layers:
        raise TrimbertError("strategy 'contribution' needs one similarity per block (pass sample text)")


def _above_threshold(strategy: str, num_layers: int, drop: int | None, similarities: Sequence[float] | None,
                     threshold: float) -> tuple[int, ...]:
    """The paper's contribution rule: every block at least ``threshold`` similar to its input."""
    if strategy != "contribution":
        raise TrimbertError(f"--threshold applies to strategy 'contribution' only, not {strategy!r}")
    if drop is not None:
        raise TrimbertError("give --drop (the K most similar blocks) or --threshold, not both")
    _check_similarities(similarities, num_layers)
    chosen = tuple(index for index, value in enumerate(similarities) if value >= threshold)
    if not 1 <= len(chosen) < num_layers:
        raise TrimbertError(f"--threshold {threshold} selects {len(chosen)} of {num_layers} blocks "
                            f"(similarities {', '.join(f'{value:.4f}' for value in similarities)}); "
                            f"it must leave at least one block and drop at least one")
    return chosen
