"""Pre-training losses against values worked out by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from pipeline.pretrain import losses


def test_distillation_loss_matches_hand_computation():
    # Teacher logits / T = [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4]; the student is uniform, q = 1/3.
    # KL(p || q) = 1/2 ln(3/2) + 2 * 1/4 ln(3/4) = 1/2 ln(9/8); times T^2 = 4: 2 ln(9/8).
    temperature = 2.0
    teacher = tf.constant([[[2 * math.log(2.0), 0.0, 0.0], [5.0, -1.0, 3.0]]])
    student = tf.constant([[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]]])
    weights = tf.constant([[1.0, 0.0]])  # the second position is padding
    value = float(losses.distillation_loss_sum(student, teacher, weights, temperature))
    assert value == pytest.approx(2 * math.log(9 / 8), rel=1e-6)


def test_distillation_loss_is_zero_when_student_equals_teacher():
    logits = tf.random.stateless_normal((2, 3, 7), seed=(1, 1))
    assert float(losses.distillation_loss_sum(logits, logits, tf.ones((2, 3)), 2.0)) == pytest.approx(0, abs=1e-6)


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
    np.testing.assert_allclose(expected, 0.9808292530117262)
