"""Poor Man's BERT's rules for which transformer blocks to drop (Sajjad et al. 2022): plain Python, no TensorFlow.

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

"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from configs.errors import TrimbertError

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
