"""Bort-style sub-architecture search: the objective, the Pareto front and successive halving.

Bort (de Wynter & Perry 2020, arXiv 2010.10499) picks the encoder shape that best
trades parameter size, inference speed and error, searching depth, heads, width and
FFN width with an approximation scheme instead of training every candidate. This
module holds the parts that need no TensorFlow; ``pipeline.studies.search`` measures and
trains.

Objective (lower is better), a weighted sum of three terms normalised to [0, ~1]::

    score = w_p * parameters / teacher_parameters
          + w_l * latency / teacher_latency
          + w_e * proxy_loss / ln(vocabulary_size)

``latency`` is the median CPU forward time at a fixed batch and length measured on
the current device; ``proxy_loss`` is the distillation loss (pre-training's, Bort's
weights) averaged over the last steps of a short run against the teacher. ln(V) is
the cross-entropy of a uniform guess over the vocabulary: a fixed scale known
before any training, so the error term's scale does not move as candidates finish.
A sum (rather than a product) keeps the bound below useful: with the error term at
its floor, a candidate's size and speed alone can already rule it out.

Approximation scheme: successive halving (Jamieson & Talwalkar 2016) on the score.
Rung r trains each contender to ``rung_steps[r]`` cumulative steps (a survivor
continues from its previous checkpoint) and promotes the best ``keep_fraction``.
Size and latency are known before training, so contenders are trained in order of
their optimistic score (error at ``error_floor``, a lower bound on the proxy loss);
once ``keep`` contenders of a rung have a real score below a contender's optimistic
score, that contender cannot make the cut and is dropped without training. The
final rung trains every survivor, so the ranked table and the Pareto front compare
finalists at the same number of steps.

Resume: every trained (candidate, rung) error and every measured cost is written to
a JSON-lines journal (rewritten atomically) as soon as it exists; a rerun reads it
and trains only what is missing. Pruning decisions are recomputed from the journal,
and they come out the same because they depend only on journalled numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Sequence

import storage


@dataclasses.dataclass(frozen=True)
class Reference:
    """The scales the three terms are divided by.

    Args:
        parameters: the teacher's parameter count.
        latency_seconds: the teacher's measured latency on the same probe.
        error_scale: ln(vocabulary size), the loss of a uniform guess.
    """

    parameters: float
    latency_seconds: float
    error_scale: float


@dataclasses.dataclass(frozen=True)
class ObjectiveWeights:
    """Weights of the three normalised terms of the objective (a search space's ``objective`` section).

    Args:
        parameters: weight of parameters / the teacher's parameters.
        latency: weight of measured latency / the teacher's latency.
        error: weight of proxy loss / ln(vocabulary size).
    """

    parameters: float = 1.0
    latency: float = 1.0
    error: float = 1.0


def objective(parameters: float, latency_seconds: float, error: float, reference: Reference,
              weights: ObjectiveWeights) -> float:
    """The score of one candidate (lower is better); see the module docstring.

    Args:
        parameters: the candidate's exact parameter count.
        latency_seconds: its measured inference latency.
        error: its proxy loss (or a lower bound on it, for an optimistic score).
        reference: the normalising scales.
        weights: the terms' weights.
    """
    return (weights.parameters * parameters / reference.parameters
            + weights.latency * latency_seconds / reference.latency_seconds
            + weights.error * error / reference.error_scale)


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (every coordinate minimised).

    A point dominates another when it is <= in every coordinate and < in at least one;
    equal points do not dominate each other, so duplicates all stay on the front.

    Args:
        points: one tuple of costs per candidate, all the same length.
    """
    front = []
    for i, point in enumerate(points):
        dominated = any(
            all(o <= p for o, p in zip(other, point, strict=True))
            and any(o < p for o, p in zip(other, point, strict=True))
            for j, other in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def keep_count(num_contenders: int, keep_fraction: float) -> int:
    """How many of a rung's contenders are promoted: the fraction rounded up, at least one."""
    return max(1, math.ceil(num_contenders * keep_fraction))


def budgeted_rung_steps(rung_steps: Sequence[int], num_candidates: int, keep_fraction: float,
                        budget_steps: int) -> tuple[int, ...]:
    """Scales a rung schedule so that the whole search trains at most ``budget_steps`` steps.

    The worst case (nothing dropped by the bound) trains ``keep_count`` survivors of
    each rung for that rung's extra steps; the schedule is scaled down or up by one
    factor and kept strictly increasing.

    Args:
        rung_steps: the space file's cumulative steps per rung.
        num_candidates: valid candidates entering rung 0.
        keep_fraction: fraction promoted per rung.
        budget_steps: total training steps allowed.
    """
    contenders, previous, worst_case = num_candidates, 0, 0
    for steps in rung_steps:
        worst_case += contenders * (steps - previous)
        contenders, previous = keep_count(contenders, keep_fraction), steps
    factor = budget_steps / worst_case
    scaled, last = [], 0
    for steps in rung_steps:
        last = max(last + 1, math.floor(steps * factor))
        scaled.append(last)
    return tuple(scaled)


class Journal:
    """Per-candidate results as JSON lines: ``{"kind": "cost"|"error", "name": ..., ...}``.

    The file is rewritten whole after every record (locally through a temporary file and
    ``os.replace``, on object storage as one object write), so a kill leaves either the old or
    the new journal, never half a line.

    Args:
        path: the journal file; read if it exists.
    """

    def __init__(self, path: str | pathlib.Path):
        self.path = str(path)
        self.records: list[dict] = []
        if storage.isfile(self.path):
            self.records = [json.loads(line) for line in storage.read_text(self.path).splitlines() if line.strip()]

    def costs(self, name: str) -> dict | None:
        return next((r for r in self.records if r["kind"] == "cost" and r["name"] == name), None)

    def error(self, name: str, rung: int) -> float | None:
        found = next((r for r in self.records if r["kind"] == "error" and r["name"] == name and r["rung"] == rung),
                     None)
        return None if found is None else found["error"]

    def append(self, record: dict) -> None:
        self.records.append(record)
        storage.write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records))


@dataclasses.dataclass
class Outcome:
    """Where a candidate's search ended.

    Args:
        name: the candidate's name.
        rung: the last rung it was trained at (-1: never trained).
        error: its proxy loss at that rung (``None`` if never trained).
        dropped_at: the rung it was dropped at, ``None`` for finalists.
        dropped_by: ``"cut"`` (not in the best fraction) or ``"bound"`` (could not make the cut).
    """

    name: str
    rung: int = -1
    error: float | None = None
    dropped_at: int | None = None
    dropped_by: str | None = None


def successive_halving(names: Sequence[str], score: Callable[[str, float], float],
                       rung_steps: Sequence[int], keep_fraction: float, error_floor: float,
                       train: Callable[[str, int, int], float], journal: Journal,
                       log: Callable[[str], None] = print) -> dict[str, Outcome]:
    """Runs successive halving with bound-based early drops; returns every candidate's outcome.

    Args:
        names: the candidates.
        score: ``score(name, error)``, the objective with the candidate's known size and speed.
        rung_steps: cumulative training steps per rung.
        keep_fraction: fraction promoted to the next rung.
        error_floor: a lower bound on any proxy loss.
        train: ``train(name, rung, steps) -> error``: trains a candidate to ``steps`` and
            returns its proxy loss; called only for (name, rung) pairs not in the journal.
        journal: where errors are read from and written to.
        log: progress lines.
    """
    outcomes = {name: Outcome(name) for name in names}
    contenders = list(names)
    final = len(rung_steps) - 1
    for rung, steps in enumerate(rung_steps):
        keep = len(contenders) if rung == final else keep_count(len(contenders), keep_fraction)
        contenders.sort(key=lambda name: score(name, error_floor))
        scored: dict[str, float] = {}
        for position, name in enumerate(contenders):
            optimistic = score(name, error_floor)
            beaten_by = sum(1 for value in scored.values() if value < optimistic)
            if beaten_by >= keep:
                outcomes[name].dropped_at, outcomes[name].dropped_by = rung, "bound"
                log(f"search rung {rung}: {name} dropped untrained (its best possible score "
                    f"{optimistic:.4f} is beaten by {beaten_by} trained candidates)")
                continue
            error = journal.error(name, rung)
            if error is None:
                log(f"search rung {rung} ({steps} steps): training {name} "
                    f"[{position + 1}/{len(contenders)}]")
                error = float(train(name, rung, steps))
                journal.append({"kind": "error", "name": name, "rung": rung, "steps": steps, "error": error})
            else:
                log(f"search rung {rung}: {name} already trained (journal), error {error:.4f}")
            outcomes[name].rung, outcomes[name].error = rung, error
            scored[name] = score(name, error)
            log(f"search rung {rung}: {name} error {error:.4f} score {scored[name]:.4f}")
        ranked = sorted(scored, key=lambda name: scored[name])
        for name in ranked[keep:]:
            outcomes[name].dropped_at, outcomes[name].dropped_by = rung, "cut"
        contenders = ranked[:keep]
        log(f"search rung {rung}: {len(scored)} trained, {len(contenders)} promoted")
    return outcomes
