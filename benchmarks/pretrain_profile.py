"""Where the time of one pre-training step goes: its parts timed in alternation, in one process.

    .venv/bin/python -m benchmarks.pretrain_profile [--configs tiny mini] [--batch-size 32] [--rounds 10]

Per config, on the synthetic batch of ``benchmarks.pretrain_throughput`` (float32, no NSP, AdamW,
global clip norm 1.0), each part is its own ``tf.function`` and all parts run in turn, round after
round, so load on the shared cores hits them alike; medians are printed in ms. Parts:

    forward            model call and masked-LM loss
    forward_backward   the same plus the gradients (embedding gradient made dense, as the step does)
    clip               global-norm clipping of a fixed set of gradients
    adamw_apply        the optimizer update alone, on fixed gradients
    mlm_projection     the vocabulary projection alone: [B*M, E] x [E, V] forward and its two
                       backward matmuls
    step               the trainer's whole step (``make_train_step``: input, all-reduce, clip, update)
    step_xla           the same with ``pretrain.jit_compile`` on
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "mini"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--max-predictions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    return parser.parse_args(argv)


def parts(config, xla_config, inputs, labels, batch_size: int) -> dict:
    """name -> a callable running that part once and waiting for its result."""
    import tensorflow as tf

    import models
    from benchmarks.pretrain_throughput import our_step
    from pipeline.pretrain import losses
    from pipeline.pretrain.optimizer import pretraining_optimizer

    model = models.build_pretraining_model(models.build_encoder(config), next_sentence=False)
    variables = model.trainable_variables
    optimizer = pretraining_optimizer(config.pretrain)
    optimizer.build(variables)
    weights = labels["masked_lm_weights"]

    def loss_of():
        logits = model(inputs, training=True)["mlm_logits"]
        return losses.masked_lm_loss_sum(logits, labels["masked_lm_ids"], weights) / tf.reduce_sum(weights)

    @tf.function
    def forward():
        return loss_of()

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = loss_of()
        return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                for g, v in zip(tape.gradient(loss, variables), variables, strict=True)]

    gradients = forward_backward()
    clip = tf.function(lambda: tf.clip_by_global_norm(gradients, 1.0)[0])
    apply = tf.function(lambda: optimizer.apply_gradients(zip(gradients, variables, strict=True)))
    width = config.model.embedding_dim or config.model.hidden_dim
    hidden = tf.random.normal((batch_size * inputs["mask_positions"].shape[1], width))
    table = tf.random.normal((config.model.vocabulary_size, width))

    @tf.function
    def mlm_projection():
        logits = tf.matmul(hidden, table, transpose_b=True)  # [B*M, V]
        return tf.matmul(logits, table), tf.matmul(logits, hidden, transpose_a=True)

    return {"forward": forward, "forward_backward": forward_backward, "clip": clip, "adamw_apply": apply,
            "mlm_projection": mlm_projection, "step": our_step(config, inputs, labels, batch_size),
            "step_xla": our_step(xla_config, inputs, labels, batch_size)}


def profile(name: str, arguments: argparse.Namespace) -> dict[str, float]:
    import tensorflow as tf

    from benchmarks.pretrain_throughput import synthetic_batch
    from configs import schema as config_lib

    overrides = ["pretrain.mixed_precision=float32", "pretrain.next_sentence=false", "pretrain.optimizer=adamw",
                 "pretrain.clip_norm=1.0"]
    config = config_lib.load(name, overrides)
    xla_config = config_lib.load(name, [*overrides, "pretrain.jit_compile=true"])
    inputs, labels = synthetic_batch(arguments.batch_size, arguments.sequence_length,
                                     arguments.max_predictions, config.model.vocabulary_size)
    functions = parts(config, xla_config, inputs, labels, arguments.batch_size)
    times = {part: [] for part in functions}
    for round_index in range(arguments.rounds + 1):  # round 0 traces and warms up
        for part, function in functions.items():
            started = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, function())
            if round_index:
                times[part].append(time.perf_counter() - started)
    return {part: 1000 * statistics.median(values) for part, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    arguments = parse_arguments(argv)
    from pipeline.clock import measure_matmul_peak

    print(f"load average {os.getloadavg()[0]:.2f}; matmul peak {measure_matmul_peak() / 1e9:.1f} GFLOP/s; "
          f"batch {arguments.batch_size}, sequence {arguments.sequence_length}, "
          f"{arguments.max_predictions} masked positions, {arguments.rounds} rounds", flush=True)
    for name in arguments.configs:
        medians = profile(name, arguments)
        print(f"{name}: " + ", ".join(f"{part} {ms:.1f} ms" for part, ms in medians.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
