"""The pre-training step: micro-batches per replica, one all-reduce of the gradients, global-norm clipping, one update.

Built once per phase by :func:`make_train_step`; the loop (``pipeline.pretrain.loop``) only calls it.
"""

from __future__ import annotations

import tensorflow as tf

from configs.schema import Config
from pipeline.pretrain import losses
from pipeline.pretrain.watchdog import PREEMPTED_EXIT_CODE as PREEMPTED_EXIT_CODE  # the CLI's exit code

ENCODER_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def make_train_step(strategy, model, teacher, optimizer, step, config: Config, global_batch: int,
                     accumulation: int, use_nsp: bool, jit_update: bool = True):
    """One optimizer step: ``accumulation`` micro-batches per replica, one all-reduce, one update.

    Gradient clipping needs the norm of the *global* gradient, but Keras clips
    each replica's gradient before its own all-reduce. So the step all-reduces
    first, clips the sum, and hands Keras ``sum / replicas``, which its
    all-reduce turns back into the clipped sum. For float16 the gradients are
    still loss-scaled here, so the threshold is scaled alike.

    With one replica and ``jit_update`` the clipping and the update run XLA-compiled: the same
    maths in a few fused loops instead of a dozen passes over every variable.
    """
    distill = config.pretrain.distill
    distillation_loss = losses.DISTILLATION_LOSSES[distill.loss]
    fp16 = config.pretrain.mixed_precision == "float16"
    clip_norm = config.pretrain.clip_norm
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables
    total = tf.distribute.ReduceOp.SUM

    def forward_backward(inputs, labels, masked_total, token_total):
        """Losses and gradients of one micro-batch; the part XLA compiles when jit_compile is on."""
        weights = labels["masked_lm_weights"]
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            mlm = losses.masked_lm_loss_sum(outputs["mlm_logits"], labels["masked_lm_ids"], weights) / masked_total
            loss = mlm
            kd = tf.constant(0.0)
            if teacher is not None and distill.objective == "hidden":
                # The teacher is an encoder alone; every non-padding token is matched.
                teacher_hidden = teacher({name: inputs[name] for name in ENCODER_INPUTS},
                                         training=False)["sequence_output"]
                kd = losses.hidden_distillation_loss_sum(outputs["hidden"], teacher_hidden, inputs["padding_mask"],
                                                         distill.hidden_loss) / token_total
            elif teacher is not None:
                teacher_logits = teacher(inputs, training=False)["mlm_logits"]
                kd = distillation_loss(outputs["mlm_logits"], teacher_logits, weights,
                                       distill.temperature) / masked_total
            if teacher is not None:
                loss = distill.mlm_weight * mlm + distill.kd_weight * kd
            nsp = tf.constant(0.0)
            if use_nsp:
                nsp = losses.next_sentence_loss_sum(outputs["nsp_logits"], labels["next_sentence_labels"])
                nsp = nsp / global_batch
                loss += nsp
            scaled = optimizer.scale_loss(loss) if fp16 else loss
        gradients = tape.gradient(scaled, variables)
        # None: a variable the loss does not reach (the pooler when there is no NSP head).
        gradients = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(gradients, variables, strict=True)]
        correct = losses.masked_lm_correct_sum(outputs["mlm_logits"], labels["masked_lm_ids"], weights)
        return gradients, {"loss": loss, "mlm_loss": mlm, "mlm_correct": correct / masked_total, "nsp_loss": nsp,
                           "kd_loss": kd}

    if config.pretrain.jit_compile:
        # The iterator and the collectives stay outside XLA; the model's maths goes inside.
        forward_backward = tf.function(forward_backward, jit_compile=True, reduce_retracing=True)

    def update(gradients):
        """Global-norm clipping and the optimizer's update of all-reduced gradients."""
        if clip_norm:
            threshold = clip_norm * (optimizer.scale_loss(1.0) if fp16 else 1.0)
            gradients, _ = tf.clip_by_global_norm(gradients, threshold)
        if replicas > 1:
            gradients = [g / replicas for g in gradients]
        optimizer.apply_gradients(zip(gradients, variables, strict=True))

    if replicas == 1 and jit_update:
        # With several replicas Keras all-reduces inside apply_gradients, which must stay outside XLA.
        update = tf.function(update, jit_compile=True)

    def replica_step(inputs, labels):
        context = tf.distribute.get_replica_context()
        # Global counts, so each replica's sum / global count all-reduces to the true mean.
        masked_total = tf.maximum(context.all_reduce(total, tf.reduce_sum(labels["masked_lm_weights"])), 1.0)
        token_total = tf.maximum(context.all_reduce(
            total, tf.reduce_sum(tf.cast(inputs["padding_mask"], tf.float32))), 1.0)
        gradients, totals = None, None
        micro = tf.shape(inputs["token_ids"])[0] // accumulation
        for part in range(accumulation):
            chunk = slice(part * micro, (part + 1) * micro)
            part_gradients, part_totals = forward_backward(
                {k: v[chunk] for k, v in inputs.items()}, {k: v[chunk] for k, v in labels.items()}, masked_total,
                token_total)
            if gradients is None:  # the first micro-batch: no zeros to add to
                gradients, totals = part_gradients, part_totals
                continue
            gradients = [g + p for g, p in zip(gradients, part_gradients, strict=True)]
            totals = {name: totals[name] + part_totals[name] for name in totals}
        if replicas > 1:
            gradients = context.all_reduce(total, gradients)
        update(gradients)
        return totals

    @tf.function(reduce_retracing=True)
    def train_step(iterator):
        inputs, labels = next(iterator)
        per_replica = strategy.run(replica_step, args=(inputs, labels))
        step.assign_add(1)
        return {name: strategy.reduce(total, value, axis=None) for name, value in per_replica.items()}

    return train_step
