"""Pre-training losses as sums, so callers can normalise by global counts.

Under a distribution strategy each replica sees part of the batch; dividing
each replica's sum by the *global* number of masked tokens (or sequences) makes
the all-reduced gradient equal to the single-device one.
"""

from __future__ import annotations

import tensorflow as tf


def masked_lm_loss_sum(logits: tf.Tensor, label_ids: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Sum over masked positions of the cross-entropy.

    Args:
        logits: [B, M, V] float.
        label_ids: [B, M] int, the original tokens at the masked positions.
        weights: [B, M] float, 1 at real masked positions and 0 at padding.
    """
    logits = tf.cast(logits, tf.float32)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label_ids, logits=logits)  # [B, M]
    return tf.reduce_sum(cross_entropy * weights)


def masked_lm_correct_sum(logits: tf.Tensor, label_ids: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Number of masked positions whose arg-max prediction is the original token."""
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(label_ids, tf.int32)), tf.float32) * weights)


def distillation_loss_sum(student_logits: tf.Tensor, teacher_logits: tf.Tensor, weights: tf.Tensor,
                          temperature: float) -> tf.Tensor:
    """Sum over masked positions of ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``.

    The T^2 factor keeps gradient magnitudes comparable across temperatures
    (Hinton et al. 2015); Bort uses T = 2 (de Wynter & Perry 2020).

    Args:
        student_logits: [B, M, V].
        teacher_logits: [B, M, V], treated as constants.
        weights: [B, M], 1 at real masked positions.
        temperature: T.
    """
    student = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    teacher_log = tf.nn.log_softmax(tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(teacher_log) * (teacher_log - student), axis=-1)  # [B, M]
    return temperature**2 * tf.reduce_sum(kl * weights)


def next_sentence_loss_sum(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Sum over sequences of the next-sentence cross-entropy; labels [B, 1] (1 = random B)."""
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)))
