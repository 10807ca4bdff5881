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


def kl_distillation_loss_sum(student_logits: tf.Tensor, teacher_logits: tf.Tensor, weights: tf.Tensor,
                             temperature: float) -> tf.Tensor:
    """Sum over masked positions of ``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` (``distill.loss: kl``).

    The textbook term. The T^2 factor keeps gradient magnitudes comparable
    across temperatures (Hinton et al. 2015).

    Args:
        student_logits: [B, M, V].
        teacher_logits: [B, M, V], treated as constants.
        weights: [B, M], 1 at real masked positions.
        temperature: T.
    """
    student_log = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    teacher_log = _teacher_log_probabilities(teacher_logits, temperature)
    kl = tf.reduce_sum(tf.exp(teacher_log) * (teacher_log - student_log), axis=-1)  # [B, M]
    return temperature**2 * tf.reduce_sum(kl * weights)


def bort_reference_distillation_loss_sum(student_logits: tf.Tensor, teacher_logits: tf.Tensor,
                                         weights: tf.Tensor, temperature: float) -> tf.Tensor:
    """Sum over masked positions of Bort's released KD term (``distill.loss: bort_reference``).

    Follows alexa/bort, utils/pretraining_distillation_utils.py, forward(): it
    hands the tempered *probabilities* p_s = softmax(student/T) and
    p_t = softmax(teacher/T) to MXNet's ``KLDivLoss(from_logits=False)``, which
    takes log_softmax of its first argument and averages over the vocabulary. So
    per masked token the term is ``T^2 * mean_v p_t * (log p_t - log_softmax(p_s))``.
    Reproduced because Bort's weights (mlm 0.1, kd 0.5, T 2) were tuned for this
    scale, which is far below the textbook KL's (docs/papers.md, Bort).

    Args: as :func:`kl_distillation_loss_sum`.
    """
    student_probabilities = tf.nn.softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    student_log = tf.nn.log_softmax(student_probabilities, axis=-1)
    teacher_log = _teacher_log_probabilities(teacher_logits, temperature)
    per_token = tf.reduce_mean(tf.exp(teacher_log) * (teacher_log - student_log), axis=-1)  # [B, M]
    return temperature**2 * tf.reduce_sum(per_token * weights)


def _teacher_log_probabilities(teacher_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    # The teacher is frozen: no gradient may flow into it through the KD term.
    return tf.nn.log_softmax(tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature, axis=-1)


# ``distill.loss`` -> the function computing its sum over masked positions.
DISTILLATION_LOSSES = {"kl": kl_distillation_loss_sum, "bort_reference": bort_reference_distillation_loss_sum}


def hidden_distillation_loss_sum(student_hidden: tf.Tensor, teacher_hidden: tf.Tensor, padding_mask: tf.Tensor,
                                 kind: str) -> tf.Tensor:
    """Sum over non-padding tokens of the hidden-state distance (``distill.objective: hidden``).

    Args:
        student_hidden: [B, T, H_t], the student's last hidden states, projected to the teacher's width.
        teacher_hidden: [B, T, H_t], treated as constants.
        padding_mask: [B, T], 1 at real tokens.
        kind: ``cosine``: 1 - cos(student, teacher) (DistilBERT); ``mse``: the mean squared difference
            over the features (TinyBERT).
    """
    student = tf.cast(student_hidden, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher_hidden, tf.float32))
    if kind == "cosine":
        per_token = 1.0 - tf.reduce_sum(tf.math.l2_normalize(student, -1) * tf.math.l2_normalize(teacher, -1), -1)
    elif kind == "mse":
        per_token = tf.reduce_mean(tf.square(student - teacher), axis=-1)
    else:
        raise ValueError(f"distill.hidden_loss must be cosine or mse, got {kind!r}")
    return tf.reduce_sum(per_token * tf.cast(padding_mask, tf.float32))


def next_sentence_loss_sum(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Sum over sequences of the next-sentence cross-entropy; labels [B, 1] (1 = random B)."""
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)))
