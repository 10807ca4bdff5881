"""Pre-training losses against values worked out by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from pipeline.pretrain import losses


def test_kl_distillation_loss_matches_hand_computation():
    # Teacher logits / T = [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4]; the student is uniform, q = 1/3.
    # KL(p || q) = 1/2 ln(3/2) + 2 * 1/4 ln(3/4) = 1/2 ln(9/8); times T^2 = 4: 2 ln(9/8).
    temperature = 2.0
    teacher = tf.constant([[[2 * math.log(2.0), 0.0, 0.0], [5.0, -1.0, 3.0]]])
    student = tf.constant([[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]]])
    weights = tf.constant([[1.0, 0.0]])  # the second position is padding
    value = float(losses.kl_distillation_loss_sum(student, teacher, weights, temperature))
    assert value == pytest.approx(2 * math.log(9 / 8), rel=1e-6)


def test_kl_distillation_loss_is_zero_when_student_equals_teacher():
    logits = tf.random.stateless_normal((2, 3, 7), seed=(1, 1))
    assert float(losses.kl_distillation_loss_sum(logits, logits, tf.ones((2, 3)), 2.0)) == pytest.approx(0, abs=1e-6)


# Hand-made logits [B=1, M=3, V=4]; the last position is padding and must not count.
STUDENT = np.array([[[1.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0], [7.0, 7.0, -7.0, 0.0]]])
TEACHER = np.array([[[4.0, 0.0, -1.0, 2.0], [-3.0, 1.0, 2.0, 0.5], [0.0, 0.0, 0.0, 9.0]]])
MASK = np.array([[1.0, 1.0, 0.0]])


def _numpy_softmax(values):
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def test_kl_distillation_loss_matches_numpy_transcription():
    temperature = 2.0
    teacher_p = _numpy_softmax(TEACHER / temperature)
    student_p = _numpy_softmax(STUDENT / temperature)
    per_token = temperature**2 * (teacher_p * (np.log(teacher_p) - np.log(student_p))).sum(axis=-1)
    expected = (per_token * MASK).sum()
    value = float(losses.kl_distillation_loss_sum(tf.constant(STUDENT, tf.float32), tf.constant(TEACHER, tf.float32),
                                                  tf.constant(MASK, tf.float32), temperature))
    assert value == pytest.approx(expected, rel=1e-5)


def test_bort_reference_loss_matches_numpy_transcription_of_released_code():
    # alexa/bort forward(): MXNet KLDivLoss(from_logits=False)(p_s, p_t) = mean_v p_t (log p_t - log_softmax(p_s)),
    # with p_s, p_t the tempered *probabilities*; times T^2, summed over masked tokens.
    temperature = 2.0
    teacher_p = _numpy_softmax(TEACHER / temperature)
    student_p = _numpy_softmax(STUDENT / temperature)
    log_softmax_of_probabilities = np.log(_numpy_softmax(student_p))
    per_token = temperature**2 * (teacher_p * (np.log(teacher_p) - log_softmax_of_probabilities)).mean(axis=-1)
    expected = (per_token * MASK).sum()
    value = float(losses.bort_reference_distillation_loss_sum(
        tf.constant(STUDENT, tf.float32), tf.constant(TEACHER, tf.float32), tf.constant(MASK, tf.float32),
        temperature))
    assert value == pytest.approx(expected, rel=1e-5)
    # Not the textbook term: on these logits the two differ by far more than rounding.
    textbook = float(losses.kl_distillation_loss_sum(tf.constant(STUDENT, tf.float32), tf.constant(TEACHER, tf.float32),
                                                     tf.constant(MASK, tf.float32), temperature))
    assert abs(value - textbook) > 0.1


def test_distill_loss_choice_is_checked_and_defaults_to_bort_reference():
    from configs import schema as config_lib

    assert config_lib.load("tiny").pretrain.distill.loss == "bort_reference"
    assert set(losses.DISTILLATION_LOSSES) == {"kl", "bort_reference"}
    with pytest.raises(config_lib.ConfigError, match="pretrain.distill.loss"):
        config_lib.load("tiny", ["pretrain.distill.loss=textbook"])


def test_masked_lm_loss_and_accuracy():
    # Uniform logits over 4 tokens: cross-entropy ln 4 at each of the two real positions.
    logits = tf.zeros((1, 3, 4))
    ids = tf.constant([[1, 2, 0]])
    weights = tf.constant([[1.0, 1.0, 0.0]])
    assert float(losses.masked_lm_loss_sum(logits, ids, weights)) == pytest.approx(2 * math.log(4))
    peaked = tf.constant([[[0, 5.0, 0, 0], [0, 0, 0, 5.0], [9.0, 0, 0, 0]]])
    assert float(losses.masked_lm_correct_sum(peaked, ids, weights)) == 1.0  # padding's hit not counted


def test_next_sentence_loss():
    logits = tf.constant([[0.0, math.log(3.0)], [0.0, 0.0]])  # p(label 1) = 3/4, then 1/2
    labels = tf.constant([[1], [0]])
    expected = -math.log(0.75) - math.log(0.5)
    assert float(losses.next_sentence_loss_sum(logits, labels)) == pytest.approx(expected, rel=1e-6)
    # Random logits against numpy's log-softmax: a sum over sequences (not a mean), labels [B, 1] or [B].
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(size=(5, 2)).astype("float32"), rng.integers(0, 2, size=5)
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -log_probabilities[np.arange(5), labels].sum()
    for shaped in (labels[:, None], labels):
        assert float(losses.next_sentence_loss_sum(tf.constant(logits), tf.constant(shaped))) == pytest.approx(
            expected, rel=1e-5)
