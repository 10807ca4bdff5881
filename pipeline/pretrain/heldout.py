"""Held-out masked-LM evaluation during pre-training, distributed as training is.

When a phase's data has held-out shards (``Manifest.heldout``), the loop (``pipeline.pretrain.loop``)
builds one :class:`HeldoutEvaluator` per phase and calls it every ``pretrain.eval_every`` steps and at
the phase's end. The stream (``pipeline.pretrain.input.heldout_dataset``) is the first
``pretrain.eval_examples`` held-out examples, in order, masked from a constant seed and padded with
zero-weight examples to whole global batches: every evaluation of every run (any seed, any number
of replicas) scores the same masked tokens, each once. Each replica sums its masked-LM loss, correct
predictions, masked tokens and examples; the sums are reduced over replicas and workers.

The run's record of its evaluations (the last one's figures, the evaluations' total seconds) is a
float64 vector (:data:`RECORD_FIELDS`) saved in the checkpoint, so a resumed or finished run's
summary still reports them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import tensorflow as tf

from beam_jobs.manifest import Manifest
from pipeline.pretrain import losses
from pipeline.pretrain.input import REAL, heldout_batches, heldout_dataset
from pipeline.pretrain.masking import MaskingSpec

# The checkpointed record: evaluations done, their total seconds, then the last one's step and figures.
RECORD_FIELDS = ("evaluations", "seconds", "step", "mlm_loss", "mlm_accuracy", "masked_tokens", "examples")


@dataclasses.dataclass(frozen=True)
class HeldoutResult:
    """One evaluation.

    Args:
        mlm_loss: mean cross-entropy over the masked tokens.
        mlm_accuracy: share of masked tokens whose arg-max prediction is the original token.
        masked_tokens: masked tokens scored (over every replica).
        examples: held-out examples scored (padding excluded).
        seconds: wall-clock of the evaluation.
    """

    mlm_loss: float
    mlm_accuracy: float
    masked_tokens: int
    examples: int
    seconds: float


def heldout_examples(manifest: Manifest, limit: int) -> int:
    """Held-out examples an evaluation scores: the data's, at most ``limit``; 0 without held-out data."""
    return min(manifest.heldout.examples, limit) if manifest.heldout else 0


class HeldoutEvaluator:
    """Scores the model on the held-out stream; each call is one pass over the same examples.

    Args:
        strategy: the run's ``tf.distribute`` strategy.
        model: the pre-training model (its ``mlm_logits`` are scored).
        manifest: data with held-out shards.
        masking: the phase's dynamic masking recipe (``packed`` data), else None.
        per_replica_batch: examples per replica and batch (the loop passes the training micro-batch).
        examples: held-out examples per evaluation (:func:`heldout_examples`).
        jit_compile: run the forward pass XLA-compiled (``pretrain.jit_compile``).
    """

    def __init__(self, strategy, model, manifest: Manifest, masking: MaskingSpec | None, per_replica_batch: int,
                 examples: int, jit_compile: bool = False):
        self.examples = examples
        self.batches = heldout_batches(examples, per_replica_batch * strategy.num_replicas_in_sync)
        dataset = strategy.distribute_datasets_from_function(
            lambda context: heldout_dataset(manifest, per_replica_batch, masking, examples, context))
        self._iterator = iter(dataset)  # endless: each call takes one pass
        total = tf.distribute.ReduceOp.SUM

        def forward(inputs, labels):
            logits = model(inputs, training=False)["mlm_logits"]
            weights = labels["masked_lm_weights"]
            return tf.stack([losses.masked_lm_loss_sum(logits, labels["masked_lm_ids"], weights),
                             losses.masked_lm_correct_sum(logits, labels["masked_lm_ids"], weights),
                             tf.reduce_sum(weights), tf.reduce_sum(labels[REAL])])

        if jit_compile:
            forward = tf.function(forward, jit_compile=True, reduce_retracing=True)

        @tf.function(reduce_retracing=True)
        def batch_sums(iterator):
            inputs, labels = next(iterator)
            return strategy.reduce(total, strategy.run(forward, args=(inputs, labels)), axis=None)

        self._batch_sums = batch_sums

    def __call__(self, interrupted: Callable[[], bool] = lambda: False) -> HeldoutResult | None:
        """One pass; None when ``interrupted()`` turns true between batches (SIGTERM: checkpoint now).

        An interrupted pass leaves the iterator inside the pass, so the run must stop after it.
        """
        started = time.perf_counter()
        loss = correct = masked = examples = 0.0
        for _ in range(self.batches):
            if interrupted():
                return None
            sums = [float(value) for value in self._batch_sums(self._iterator).numpy()]
            loss, correct, masked, examples = loss + sums[0], correct + sums[1], masked + sums[2], examples + sums[3]
        count = max(masked, 1.0)
        return HeldoutResult(mlm_loss=loss / count, mlm_accuracy=correct / count, masked_tokens=int(round(masked)),
                             examples=int(round(examples)), seconds=time.perf_counter() - started)


def record_after(record: tf.Variable, step: int, result: HeldoutResult) -> None:
    """Adds ``result`` at ``step`` to the checkpointed :data:`RECORD_FIELDS` vector."""
    evaluations, seconds = (float(value) for value in record.numpy()[:2])
    record.assign([evaluations + 1, seconds + result.seconds, step, result.mlm_loss, result.mlm_accuracy,
                   result.masked_tokens, result.examples])


def metrics_row(step: int, phase: int, result: HeldoutResult) -> dict:
    """The metrics.jsonl row of one evaluation (its scalars also go to TensorBoard under these names)."""
    return {"step": step, "phase": phase, "heldout_mlm_loss": result.mlm_loss,
            "heldout_mlm_accuracy": result.mlm_accuracy, "heldout_masked_tokens": result.masked_tokens,
            "heldout_examples": result.examples, "heldout_seconds": result.seconds}


def summary_fields(record: tf.Variable) -> dict:
    """summary.json's held-out fields: the last evaluation and every evaluation's seconds; none if no evaluation."""
    values = dict(zip(RECORD_FIELDS, (float(value) for value in record.numpy()), strict=True))
    if not values["evaluations"]:
        return {}
    return {"heldout_mlm_loss": values["mlm_loss"], "heldout_mlm_accuracy": values["mlm_accuracy"],
            "heldout_step": int(values["step"]), "heldout_masked_tokens": int(values["masked_tokens"]),
            "heldout_examples": int(values["examples"]), "heldout_evaluations": int(values["evaluations"]),
            "heldout_seconds": values["seconds"]}
