"""CPU inference latency of the shipped encoders, as speed-ups over BERT-Base measured in one run.

    .venv/bin/python -m benchmarks.encoder_latency [--configs ...] [--batch-sizes 1 32] [--device /GPU:0]

The ops are pinned to ``--device`` (``/CPU:0`` by default, with GPUs hidden), so a CPU figure is
never a GPU's; ``--device /GPU:0`` times an accelerator instead and says so in the output.

Every encoder is built from its shipped config with random weights (latency does not depend
on the weight values) and wrapped in one ``tf.function``. Other jobs may share the cores, so
each model is timed *paired* with BERT-Base: calls alternate (model, base, base, model, ...)
after a warm-up of both, and the speed-up is median(BERT-Base) / median(model) over the same
rounds, so load that drifts during the run hits both sides alike.
Papers' claims are printed beside the measurements:
  Bort: 7.9x faster than BERT-Base on CPU, about 20x than BERT-Large (de Wynter & Perry 2020).
  Poor Man's BERT: dropping 6 of 12 layers cuts inference time by about 50% (Sajjad et al. 2022).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time

DEFAULT_CONFIGS = ("bert_large", "bort", "trimbert", "trimbert_ffn_half", "trimbert_no_ffn",
                   "trimbert_half_ln", "trimbert_relu", "pmb_6l")
PAPER_CLAIMS = {
    "bert_large": "~0.4x (implied: Bort is 7.9x vs BERT-Base, ~20x vs BERT-Large)",
    "bort": "7.9x (de Wynter & Perry 2020, CPU)",
    "pmb_6l": "~2x (Sajjad et al. 2022: ~50% less inference time)",
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help="shipped config names, each timed against bert_base")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--device", default="/CPU:0", help="where the ops run: /CPU:0 (default) or e.g. /GPU:0")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--small-rounds", type=int, default=10, help="paired rounds at batch < 8")
    parser.add_argument("--large-rounds", type=int, default=3, help="paired rounds at batch >= 8")
    parser.add_argument("--budget-seconds", type=float, default=30.0,
                        help="stop adding rounds for one setting once it has taken this long (min 2 rounds)")
    return parser.parse_args(argv)


def build(name: str, sequence_length: int, device: str = "/CPU:0"):
    """(config, tf.function of the encoder with its weights and ops on ``device``) for a shipped config."""
    import tensorflow as tf

    from configs import schema as config_module
    from models import build_encoder

    config = config_module.load(name)
    with tf.device(device):
        encoder = build_encoder(config)

    def forward(batch):
        with tf.device(device):  # pinned: without it the ops go to the default device
            return encoder(batch, training=False)["sequence_output"]

    return config, tf.function(forward)


def make_inputs(batch_size: int, sequence_length: int, vocabulary_size: int) -> dict:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(batch_size)
    return {
        "token_ids": tf.constant(rng.integers(1000, vocabulary_size, (batch_size, sequence_length)), tf.int32),
        "segment_ids": tf.zeros((batch_size, sequence_length), tf.int32),
        "padding_mask": tf.ones((batch_size, sequence_length), tf.int32),
    }


def seconds(function, inputs) -> float:
    start = time.perf_counter()
    function(inputs).numpy()
    return time.perf_counter() - start


def paired_timings(base_function, model_function, inputs, rounds: int, budget_seconds: float):
    """Alternating timings of BERT-Base and a model on the same inputs (after one warm-up each)."""
    base_function(inputs).numpy()
    model_function(inputs).numpy()
    base_times, model_times = [], []
    started = time.perf_counter()
    for round_index in range(rounds):
        if round_index % 2 == 0:
            model_times.append(seconds(model_function, inputs))
            base_times.append(seconds(base_function, inputs))
        else:
            base_times.append(seconds(base_function, inputs))
            model_times.append(seconds(model_function, inputs))
        if round_index >= 1 and time.perf_counter() - started > budget_seconds:
            break
    return base_times, model_times


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    arguments = parse_arguments(argv)
    if arguments.device.upper().startswith("/CPU"):
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    from models import count_parameters, flops_per_token

    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, load average before {load_before[0]:.2f}; "
          f"timed on {arguments.device}", flush=True)
    base_config, base_function = build("bert_base", arguments.sequence_length, arguments.device)
    header = ["config", "params", "GFLOPs/seq"]
    for batch_size in arguments.batch_sizes:
        header += [f"b{batch_size} ms (BERT-Base ms)", f"b{batch_size} speed-up"]
    header.append("paper's claim (speed-up vs BERT-Base)")
    rows = []
    for name in arguments.configs:
        config, function = build(name, arguments.sequence_length, arguments.device)
        gflops = flops_per_token(config, arguments.sequence_length) * arguments.sequence_length / 1e9
        row = [name, f"{count_parameters(config).total / 1e6:.1f}M", f"{gflops:.1f}"]
        for batch_size in arguments.batch_sizes:
            inputs = make_inputs(batch_size, arguments.sequence_length, config.model.vocabulary_size)
            rounds = arguments.small_rounds if batch_size < 8 else arguments.large_rounds
            base_times, model_times = paired_timings(
                base_function, function, inputs, rounds, arguments.budget_seconds)
            base_ms, model_ms = 1000 * statistics.median(base_times), 1000 * statistics.median(model_times)
            row += [f"{model_ms:.1f} ({base_ms:.1f}), n={len(model_times)}", f"{base_ms / model_ms:.2f}x"]
            print(f"  {name} batch {batch_size}: {model_ms:.1f} ms vs BERT-Base {base_ms:.1f} ms "
                  f"-> {base_ms / model_ms:.2f}x over {len(model_times)} paired rounds", flush=True)
        row.append(PAPER_CLAIMS.get(name, ""))
        rows.append(row)
        del function
        gc.collect()  # frees this model before the next is built (BERT-Large is 1.3 GB)
    load_after = os.getloadavg()
    base_gflops = flops_per_token(base_config, arguments.sequence_length) * arguments.sequence_length / 1e9
    print(f"\nBERT-Base: {count_parameters(base_config).total / 1e6:.1f}M parameters, "
          f"{base_gflops:.1f} GFLOPs per sequence of {arguments.sequence_length}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\ndevice {arguments.device}; sequence length {arguments.sequence_length}; "
          f"load average (1 min) before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
