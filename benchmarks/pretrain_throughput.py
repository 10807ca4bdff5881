"""Pre-training throughput on this CPU: our training step against keras-hub's BertMaskedLM.

    .venv/bin/python -m benchmarks.pretrain_throughput [--configs ...] [--batch-size 8] [--rounds 3]
        [--optimizer adamw|lamb]

For each config, our step (``pipeline.pretrain.step.make_train_step``: masked-LM loss, all-reduce,
global-norm clipping) and a keras-hub ``BertMaskedLM`` with the same dimensions (untrimmed:
keras-hub has no trims) trained by the same kind of step (GradientTape, weighted masked-LM
cross-entropy, global clipping) run on the same synthetic batch. Both sides use the optimizer
``--optimizer`` names (AdamW by default, whatever the config says),
built by the same ``make_optimizer``, and the output says which. Our side runs the config as it
is otherwise (its ``pretrain.jit_compile`` included, printed in the table); keras-hub's step is
not XLA-compiled. They run timed in alternation after a warm-up so load on the shared cores hits
both alike. Reported: sequences/s for both, the ratio of their medians and the median of the
per-round ratios, and the achieved FLOP/s of our step against a measured matmul peak of this machine
(training FLOPs = 3 x forward FLOPs, forward from ``models.params.flops_per_token`` plus the
masked-LM head).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

DEFAULT_CONFIGS = ("tiny", "mini", "bert_base", "trimbert", "trimbert_ffn_half", "trimbert_no_ffn", "trimbert_relu",
                   "bort")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--max-predictions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps of each side, alternating")
    parser.add_argument("--optimizer", choices=("adamw", "lamb"), default="adamw",
                        help="the optimizer of both sides (the config's own is overridden)")
    parser.add_argument("--one-config", help=argparse.SUPPRESS)  # child mode: time one config, print JSON
    return parser.parse_args(argv)


def synthetic_batch(batch_size: int, sequence_length: int, max_predictions: int, vocabulary_size: int):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    positions = np.sort(np.stack([rng.choice(np.arange(1, sequence_length - 1), max_predictions, replace=False)
                                  for _ in range(batch_size)]), axis=1)
    inputs = {
        "token_ids": tf.constant(rng.integers(1000, vocabulary_size, (batch_size, sequence_length)), tf.int32),
        "segment_ids": tf.zeros((batch_size, sequence_length), tf.int32),
        "padding_mask": tf.ones((batch_size, sequence_length), tf.int32),
        "mask_positions": tf.constant(positions, tf.int32),
    }
    labels = {
        "masked_lm_ids": tf.constant(rng.integers(1000, vocabulary_size, (batch_size, max_predictions)), tf.int32),
        "masked_lm_weights": tf.ones((batch_size, max_predictions), tf.float32),
        "next_sentence_labels": tf.zeros((batch_size, 1), tf.int32),
    }
    return inputs, labels


def our_step(config, inputs, labels, batch_size: int):
    """Our trainer's step function on an endless iterator of the same batch."""
    import tensorflow as tf

    import models
    from pipeline.pretrain.optimizer import pretraining_optimizer
    from pipeline.pretrain.step import make_train_step

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = models.build_pretraining_model(models.build_encoder(config), next_sentence=False)
        optimizer = pretraining_optimizer(config.pretrain)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    dataset = tf.data.Dataset.from_tensors((inputs, labels)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    train_step = make_train_step(strategy, model, None, optimizer, step, config, batch_size, 1, False)
    return lambda: train_step(iterator)["loss"].numpy()


def keras_hub_step(config, inputs, labels):
    """keras-hub BertMaskedLM with the same dimensions, trained by a plain GradientTape step."""
    import keras_hub
    import tensorflow as tf

    from pipeline.pretrain.optimizer import make_optimizer

    model_config = config.model
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=model_config.vocabulary_size, num_layers=model_config.num_layers,
        num_heads=model_config.num_heads, hidden_dim=model_config.hidden_dim,
        intermediate_dim=model_config.intermediate_dim, dropout=model_config.dropout,
        max_sequence_length=model_config.max_sequence_length)
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    pretrain = config.pretrain  # the same optimizer, decay and clipping as our side
    optimizer = make_optimizer(pretrain.optimizer, pretrain.learning_rate, pretrain.weight_decay,
                               pretrain.adam_epsilon, clip_norm=pretrain.clip_norm)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels["masked_lm_ids"], logits)
            weights = labels["masked_lm_weights"]
            loss = tf.reduce_sum(cross_entropy * weights) / tf.reduce_sum(weights)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return lambda: step().numpy()


def training_flops(config, batch_size: int, sequence_length: int, max_predictions: int) -> float:
    from models import flops_per_token

    model = config.model
    width = model.embedding_dim or model.hidden_dim
    forward = flops_per_token(config, sequence_length) * sequence_length
    forward += max_predictions * (2 * model.hidden_dim * width + 2 * width * model.vocabulary_size)
    return 3.0 * forward * batch_size


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure(name: str, arguments: argparse.Namespace) -> dict:
    """Times our step and keras-hub's on one config, alternating; run in a child process."""
    from configs import schema as config_lib

    config = config_lib.load(name, ["pretrain.mixed_precision=float32", "pretrain.next_sentence=false",
                                    f"pretrain.optimizer={arguments.optimizer}", "pretrain.clip_norm=1.0"])
    inputs, labels = synthetic_batch(arguments.batch_size, arguments.sequence_length,
                                     arguments.max_predictions, config.model.vocabulary_size)
    ours = our_step(config, inputs, labels, arguments.batch_size)
    theirs = keras_hub_step(config, inputs, labels)
    ours(), theirs()  # trace and warm up both
    our_times, their_times = [], []
    for round_index in range(arguments.rounds):
        pair = (ours, theirs) if round_index % 2 == 0 else (theirs, ours)
        for function in pair:
            (our_times if function is ours else their_times).append(timed(function))
    flops = training_flops(config, arguments.batch_size, arguments.sequence_length, arguments.max_predictions)
    # Each round's two steps ran back to back, so their ratio sees one load; the median of those
    # ratios is steadier on shared cores than the ratio of the two medians.
    paired = statistics.median(theirs / ours for ours, theirs in zip(our_times, their_times, strict=True))
    return {"ours_seconds": statistics.median(our_times), "keras_hub_seconds": statistics.median(their_times),
            "paired_ratio": paired, "training_flops": flops, "optimizer": config.pretrain.optimizer,
            "jit_compile": config.pretrain.jit_compile}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    arguments = parse_arguments(argv)
    if arguments.one_config:
        from pipeline.host_memory import keep_freed_memory

        keep_freed_memory()  # as the trimbert command does; both sides share the process
        print("RESULT " + json.dumps(measure(arguments.one_config, arguments)), flush=True)
        return 0
    from configs import schema as config_lib
    from models import count_parameters
    from pipeline.clock import measure_matmul_peak

    load_before = os.getloadavg()[0]
    peak = measure_matmul_peak()
    print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, load average {load_before:.2f}; "
          f"measured matmul peak {peak / 1e9:.1f} GFLOP/s (2048^3, float32); optimizer {arguments.optimizer} "
          f"on both sides", flush=True)
    rows = []
    for name in arguments.configs:
        # One child per config: TensorFlow keeps traced graphs and weights alive across models in one
        # process (BERT-sized runs grew past 16 GB), and ours and keras-hub's still share a process.
        command = [sys.executable, "-m", "benchmarks.pretrain_throughput", "--one-config", name,
                   "--batch-size", str(arguments.batch_size), "--sequence-length", str(arguments.sequence_length),
                   "--max-predictions", str(arguments.max_predictions), "--rounds", str(arguments.rounds),
                   "--optimizer", arguments.optimizer]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
        assert result["optimizer"] == arguments.optimizer  # the child ran what the table will say
        our_rate = arguments.batch_size / result["ours_seconds"]
        their_rate = arguments.batch_size / result["keras_hub_seconds"]
        achieved = result["training_flops"] / result["ours_seconds"]
        config = config_lib.load(name)
        rows.append([name, "on" if result["jit_compile"] else "off", f"{count_parameters(config).total / 1e6:.1f}M",
                     f"{our_rate:.2f}", f"{their_rate:.2f}", f"{our_rate / their_rate:.2f}x",
                     f"{result['paired_ratio']:.2f}x", f"{achieved / 1e9:.1f}", f"{achieved / peak:.0%}"])
        print(f"  {name}: ours {our_rate:.2f} seq/s, keras-hub (untrimmed, same dims) {their_rate:.2f} seq/s, "
              f"paired ratio {result['paired_ratio']:.2f}x, {achieved / 1e9:.1f} GFLOP/s", flush=True)
    header = ["config", "our XLA (pretrain.jit_compile)", "params", "ours seq/s", "keras-hub BertMaskedLM seq/s",
              "ours / keras-hub", "median of paired ratios", "achieved GFLOP/s", "of matmul peak"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\noptimizer {arguments.optimizer} (both sides, global clip norm 1.0); batch {arguments.batch_size}, "
          f"sequence {arguments.sequence_length}, {arguments.max_predictions} masked "
          f"positions, {arguments.rounds} timed steps each; load average before {load_before:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
