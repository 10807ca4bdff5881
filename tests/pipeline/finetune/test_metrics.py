"""GLUE metrics against values worked out by hand (the arithmetic is in each test)."""

import math

import numpy as np
import pytest

from configs.errors import TrimbertError
from pipeline.finetune import metrics
from pipeline.finetune.tasks import get_task


def test_accuracy():
    # correct at positions 0 and 2 of 4 -> 2/4
    assert metrics.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(0.5)


def test_f1_of_positive_class():
    # tp = positions 0, 3 -> 2; fp = position 1 -> 1; fn = position 4 -> 1
    # F1 = 2*2 / (2*2 + 1 + 1) = 4/6
    assert metrics.f1([1, 1, 0, 1, 0], [1, 0, 0, 1, 1]) == pytest.approx(4 / 6)
    # same data with class 0 as positive: tp = position 2 -> 1; fp = 4 -> 1; fn = 1 -> 1: 2/(2+1+1)
    assert metrics.f1([1, 1, 0, 1, 0], [1, 0, 0, 1, 1], positive=0) == pytest.approx(0.5)


def test_f1_without_any_positive_is_zero_not_nan():
    assert metrics.f1([0, 0, 0], [0, 0, 0]) == 0.0


def test_macro_f1_by_hand():
    predictions, labels = [0, 1, 1, 2, 0, 2], [0, 0, 1, 2, 2, 2]
    # class 0: tp 1 (pos 0), fp 1 (pos 4), fn 1 (pos 1) -> 2/(2+1+1) = 1/2
    # class 1: tp 1 (pos 2), fp 1 (pos 1), fn 0 -> 2/(2+1) = 2/3
    # class 2: tp 2 (pos 3, 5), fp 0, fn 1 (pos 4) -> 4/(4+1) = 4/5
    assert metrics.macro_f1(predictions, labels) == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    # A class only predicted counts with F1 0: class 0 -> 2/(2+0+1) = 2/3, class 3 -> 0; mean 1/3.
    assert metrics.macro_f1([0, 3], [0, 0]) == pytest.approx(1 / 3)
    assert metrics.macro_f1([1, 1], [1, 1]) == 1.0


def _sklearn_macro_f1(predictions, labels) -> float:
    """scikit-learn's f1_score(average="macro", zero_division=0) written out: the labels are the sorted
    union of y_true and y_pred; per label precision tp/(tp+fp) and recall tp/(tp+fn), each 0 when its
    denominator is 0, F = 2 P R / (P + R), 0 when P + R is 0; the unweighted mean over the labels."""
    scores = []
    for label in sorted(set(predictions) | set(labels)):
        pairs = list(zip(predictions, labels, strict=True))
        tp = sum(1 for p, t in pairs if p == label and t == label)
        fp = sum(1 for p, t in pairs if p == label and t != label)
        fn = sum(1 for p, t in pairs if p != label and t == label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def test_macro_f1_matches_sklearns_definition_on_random_labels():
    rng = np.random.default_rng(7)
    for trial in range(200):
        n, classes = int(rng.integers(1, 40)), int(rng.integers(2, 6))
        labels = rng.integers(0, classes, n).tolist()
        predictions = rng.integers(0, classes + int(trial % 3 == 0), n).tolist()  # sometimes a class never gold
        assert metrics.macro_f1(predictions, labels) == pytest.approx(_sklearn_macro_f1(predictions, labels)), trial


def test_matthews_binary():
    # tp = 2 (0, 3), fp = 1 (1), tn = 2 (2, 5), fn = 1 (4)
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (4 - 1) / sqrt(3*3*3*3) = 3/9
    assert metrics.matthews_correlation([1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 0]) == pytest.approx(1 / 3)
    assert metrics.matthews_correlation([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert metrics.matthews_correlation([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)


def test_matthews_multiclass():
    # c = 3 correct of s = 6; predicted counts p = [2, 2, 2], gold counts t = [2, 2, 2]
    # (c*s - p.t) / sqrt((s^2 - p.p)(s^2 - t.t)) = (18 - 12) / sqrt(24 * 24) = 6/24
    assert metrics.matthews_correlation([0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 2, 0]) == pytest.approx(0.25)


def test_matthews_constant_predictions_is_zero_not_nan():
    value = metrics.matthews_correlation([1, 1, 1, 1], [1, 0, 1, 0])
    assert value == 0.0 and not math.isnan(value)
    assert metrics.matthews_correlation([0, 1], [1, 1]) == 0.0  # constant labels


def test_pearson():
    # means 2 and 7/3; centered [-1, 0, 1] and [-4/3, -1/3, 5/3]
    # dot = 4/3 + 5/3 = 3; norms^2 = 2 and 42/9 -> 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    assert metrics.pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))


def test_pearson_constant_is_zero_not_nan():
    assert metrics.pearson([2.5, 2.5, 2.5], [1.0, 2.0, 4.0]) == 0.0


def test_average_ranks_share_ties():
    np.testing.assert_allclose(metrics.average_ranks([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(metrics.average_ranks([3, 1, 3, 3]), [3, 1, 3, 3])  # ranks 2,3,4 -> 3


def test_spearman_with_ties():
    # ranks: predictions [1, 2.5, 2.5, 4], labels [1, 3, 2, 4], both mean 2.5
    # centered [-1.5, 0, 0, 1.5] and [-1.5, .5, -.5, 1.5]: dot = 4.5, norms^2 = 4.5 and 5
    # 4.5 / sqrt(4.5 * 5) = 4.5 / sqrt(22.5)
    assert metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    # monotone but non-linear -> Spearman 1
    assert metrics.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)


def test_mismatched_lengths_and_empty_inputs_are_clear_errors():
    with pytest.raises(TrimbertError, match="3 predictions for 2 labels"):
        metrics.accuracy([1, 0, 1], [1, 0])
    with pytest.raises(TrimbertError, match="no examples"):
        metrics.accuracy([], [])


def test_mrpc_score_is_mean_of_f1_and_accuracy():
    # F1 = 4/6 (as above); accuracy = 3/5 (positions 0, 2, 3)
    values = get_task("mrpc").evaluate({"validation": ([1, 1, 0, 1, 0], [1, 0, 0, 1, 1])})
    assert values["f1"] == pytest.approx(4 / 6)
    assert values["accuracy"] == pytest.approx(0.6)
    assert values["score"] == pytest.approx((4 / 6 + 0.6) / 2)


def test_stsb_score_is_mean_of_pearson_and_spearman():
    values = get_task("stsb").evaluate({"validation": ([1, 2, 3], [1, 2, 4])})
    # Spearman: ranks identical [1, 2, 3] -> 1
    assert values["pearson"] == pytest.approx(9 / math.sqrt(84))
    assert values["spearman"] == pytest.approx(1.0)
    assert values["score"] == pytest.approx((9 / math.sqrt(84) + 1.0) / 2)


def test_mnli_reports_matched_and_mismatched():
    values = get_task("mnli").evaluate({
        "validation_matched": ([0, 1, 2], [0, 1, 2]),      # 3/3
        "validation_mismatched": ([0, 0], [0, 1]),          # 1/2
    })
    assert values == pytest.approx({"accuracy_matched": 1.0, "accuracy_mismatched": 0.5, "score": 0.75})
    assert get_task("mnli").metrics.reported_names() == [
        "accuracy_matched", "accuracy_mismatched", "score"]
    with pytest.raises(TrimbertError, match="validation_mismatched"):
        get_task("mnli").evaluate({"validation_matched": ([0], [0])})


def test_cola_scores_matthews_and_sentiment_scores_accuracy():
    assert get_task("cola").evaluate({"validation": ([1, 1, 1], [1, 0, 1])})["score"] == 0.0
    values = get_task("sentiment-movies").evaluate_split([1, 0, 1, 1], [1, 1, 1, 0])
    assert values == pytest.approx({"accuracy": 0.5, "score": 0.5})


def test_every_glue_task_has_metrics():
    expected = {"cola": ("matthews",), "sst2": ("accuracy",), "mrpc": ("f1", "accuracy"),
                "stsb": ("pearson", "spearman"), "qqp": ("accuracy", "f1"), "mnli": ("accuracy",),
                "qnli": ("accuracy",), "rte": ("accuracy",), "wnli": ("accuracy",)}
    for task, names in expected.items():
        assert get_task(task).metrics.metrics == names
    with pytest.raises(TrimbertError, match="unknown task 'squad'"):
        get_task("squad")
