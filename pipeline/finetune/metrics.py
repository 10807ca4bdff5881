"""GLUE's official metrics in numpy, and how a task's metrics make its score.

The functions follow the definitions the GLUE leaderboard uses (Wang et al.,
2019, Table 1): accuracy; F1 of the positive class 1 (MRPC, QQP); Matthews
correlation (CoLA); Pearson and Spearman correlation (STS-B), Spearman with
tied values given the average of their ranks. A user's own classification task
(``pipeline.finetune.task_files``) also reports macro-F1, scikit-learn's
``f1_score(average="macro")``. Undefined cases (a constant
prediction or label vector, no positive example at all) score 0.0 instead of
NaN, as scikit-learn does for Matthews and F1, so a degenerate seed drags a
mean down instead of poisoning it.

A task's single "score" (used for best-on-dev selection and the GLUE average)
is the unweighted mean of its score metrics over its evaluation splits, as
GLUE averages a task's metrics: MRPC = (F1 + acc)/2, STS-B = (Pearson +
Spearman)/2, QQP = (acc + F1)/2, MNLI = (matched acc + mismatched acc)/2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from configs.errors import TrimbertError

ArrayLike = Sequence[float] | np.ndarray


# ---------------------------------------------------------------------------
# Metric functions
# ---------------------------------------------------------------------------


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of predictions equal to their label.

    Args:
        predictions: predicted class indices, shape [n].
        labels: gold class indices, shape [n].
    """
    predictions, labels = _pair(predictions, labels)
    return float(np.mean(predictions == labels))


def f1(predictions: ArrayLike, labels: ArrayLike, positive: int = 1) -> float:
    """Binary F1 of class ``positive``: 2 tp / (2 tp + fp + fn); 0.0 when that is 0/0.

    Args:
        predictions: predicted class indices, shape [n].
        labels: gold class indices, shape [n].
        positive: the class whose precision and recall are combined.
    """
    predictions, labels = _pair(predictions, labels)
    predicted_positive = predictions == positive
    gold_positive = labels == positive
    true_positives = np.sum(predicted_positive & gold_positive)
    false_positives = np.sum(predicted_positive & ~gold_positive)
    false_negatives = np.sum(~predicted_positive & gold_positive)
    denominator = 2 * true_positives + false_positives + false_negatives
    return float(2 * true_positives / denominator) if denominator else 0.0


def macro_f1(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Unweighted mean of every class's F1 (:func:`f1` with that class as positive).

    The classes are those present in ``labels`` or ``predictions`` (as scikit-learn's
    ``f1_score(average="macro")`` takes them); a class whose F1 is 0/0 cannot occur among them, as
    each has a gold or a predicted example.

    Args:
        predictions: predicted class indices, shape [n].
        labels: gold class indices, shape [n].
    """
    predictions, labels = _pair(predictions, labels)
    return float(np.mean([f1(predictions, labels, positive=k) for k in np.union1d(predictions, labels)]))


def matthews_correlation(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation coefficient (multi-class form of Gorodkin 2004).

    With confusion counts, c = correct, s = total, t_k = gold count of class k,
    p_k = predicted count of class k:
    MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)).
    For two classes this equals (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)).
    A zero denominator (constant predictions or labels) gives 0.0.

    Args:
        predictions: predicted class indices, shape [n].
        labels: gold class indices, shape [n].
    """
    predictions, labels = _pair(predictions, labels)
    classes = np.union1d(predictions, labels)
    predicted_counts = np.array([np.sum(predictions == k) for k in classes], dtype=np.float64)
    gold_counts = np.array([np.sum(labels == k) for k in classes], dtype=np.float64)
    correct = float(np.sum(predictions == labels))
    total = float(len(labels))
    numerator = correct * total - float(np.dot(predicted_counts, gold_counts))
    denominator = np.sqrt((total**2 - float(np.dot(predicted_counts, predicted_counts)))
                          * (total**2 - float(np.dot(gold_counts, gold_counts))))
    return float(numerator / denominator) if denominator > 0 else 0.0


def pearson(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Pearson correlation; 0.0 when either side is constant.

    Args:
        predictions: predicted scores, shape [n].
        labels: gold scores, shape [n].
    """
    predictions, labels = _pair(predictions, labels, dtype=np.float64)
    predicted_centered = predictions - predictions.mean()
    gold_centered = labels - labels.mean()
    denominator = np.sqrt(np.dot(predicted_centered, predicted_centered)
                          * np.dot(gold_centered, gold_centered))
    return float(np.dot(predicted_centered, gold_centered) / denominator) if denominator > 0 else 0.0


def spearman(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Spearman correlation: Pearson of the ranks, ties given their average rank.

    Args:
        predictions: predicted scores, shape [n].
        labels: gold scores, shape [n].
    """
    predictions, labels = _pair(predictions, labels, dtype=np.float64)
    return pearson(average_ranks(predictions), average_ranks(labels))


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span.

    ``[10, 20, 20, 30]`` -> ``[1, 2.5, 2.5, 4]``.

    Args:
        values: numbers to rank, shape [n].
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0  # mean of ranks start+1 .. end+1
        start = end + 1
    return ranks


def _pair(predictions: ArrayLike, labels: ArrayLike, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions, dtype=dtype).reshape(-1)
    labels = np.asarray(labels, dtype=dtype).reshape(-1)
    if predictions.shape != labels.shape:
        raise TrimbertError(f"metrics: {len(predictions)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise TrimbertError("metrics: no examples to score")
    return predictions, labels


METRIC_FUNCTIONS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "matthews": matthews_correlation,
    "pearson": pearson,
    "spearman": spearman,
}


# ---------------------------------------------------------------------------
# What a task reports (each Task in pipeline.finetune.tasks holds one)
# ---------------------------------------------------------------------------

DEV = (("validation", ""),)


@dataclasses.dataclass(frozen=True)
class TaskMetrics:
    """The metrics a task reports and how they make its single score.

    Args:
        metrics: names in ``METRIC_FUNCTIONS`` computed on each evaluation split.
        score: the subset of ``metrics`` averaged (over them and the splits) into "score".
        splits: (evaluation split, suffix added to metric names) pairs; MNLI's
            two dev sets report ``accuracy_matched`` and ``accuracy_mismatched``.
    """

    metrics: tuple[str, ...]
    score: tuple[str, ...]
    splits: tuple[tuple[str, str], ...] = DEV

    def reported_names(self) -> list[str]:
        """Every metric name :meth:`evaluate` returns, "score" last."""
        return [_suffixed(metric, suffix) for _, suffix in self.splits for metric in self.metrics] + ["score"]

    def evaluate(self, split_predictions: Mapping[str, tuple[ArrayLike, ArrayLike]],
                 task: str = "task") -> dict[str, float]:
        """All of a task's dev metrics and its score.

        Args:
            split_predictions: evaluation split -> (predictions, labels); needs every
                split in ``splits`` (MNLI: both dev sets).
            task: the task's name, for error messages.

        Returns:
            metric name -> value, e.g. ``{"f1": .., "accuracy": .., "score": ..}``.
        """
        missing = [split for split, _ in self.splits if split not in split_predictions]
        if missing:
            raise TrimbertError(f"{task}: predictions missing for evaluation split(s) {', '.join(missing)}")
        values: dict[str, float] = {}
        score_parts = []
        for split, suffix in self.splits:
            predictions, labels = split_predictions[split]
            for metric in self.metrics:
                value = METRIC_FUNCTIONS[metric](predictions, labels)
                values[_suffixed(metric, suffix)] = value
                if metric in self.score:
                    score_parts.append(value)
        values["score"] = float(np.mean(score_parts))
        return values

    def evaluate_split(self, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
        """The metrics on one labelled split (e.g. a sentiment test set), no suffixes.

        Args:
            predictions: class indices, or scores for regression, shape [n].
            labels: gold labels, shape [n].
        """
        values = {metric: METRIC_FUNCTIONS[metric](predictions, labels) for metric in self.metrics}
        values["score"] = float(np.mean([values[metric] for metric in self.score]))
        return values


ACCURACY = TaskMetrics(metrics=("accuracy",), score=("accuracy",))


def _suffixed(metric: str, suffix: str) -> str:
    return f"{metric}_{suffix}" if suffix else metric
