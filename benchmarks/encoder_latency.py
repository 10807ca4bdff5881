"""CPU inference latency of the shipped encoders, as speed-ups over BERT-Base measured in one run.

    .venv/bin/python -m benchmarks.encoder_latency [--configs ...] [--batch-sizes 1 32]

Every encoder is built from its shipped config with random weights (latency does not depend
on the weight values), wrapped in one ``tf.function``, warmed up, then timed; the median of
the timed calls is reported. Speed-up = BERT-Base median / model median at the same batch
size, where the BERT-Base median is the mean of two timings, first and last in the run.
Papers' claims are printed beside the measurements:
  Bort: 7.9x faster than BERT-Base on CPU, about 20x than BERT-Large (de Wynter & Perry 2020).
  Poor Man's BERT: dropping 6 of 12 layers cuts inference time by about 50% (Sajjad et al. 2022).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

DEFAULT_CONFIGS = ("bert_base", "bert_large", "bort", "trimbert", "trimbert_ffn_half", "trimbert_no_ffn",
                   "trimbert_half_ln", "trimbert_relu", "pmb_6l")
PAPER_CLAIMS = {
    "bert_large": "Bort is ~20x faster than it (so ~0.4x of BERT-Base, implied)",
    "bort": "7.9x (de Wynter & Perry 2020, CPU)",
    "pmb_6l": "~2x (Sajjad et al. 2022: ~50% less inference time)",
    "trimbert": "smaller/faster training; no CPU latency figure available to us",
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help="shipped config names; bert_base is always measured first")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--small-repeats", type=int, default=10, help="timed calls at batch 1")
    parser.add_argument("--large-repeats", type=int, default=3, help="timed calls at batch >= 8")
    parser.add_argument("--budget-seconds", type=float, default=8.0,
                        help="stop timing a setting early once its timed calls exceed this")
    return parser.parse_args(argv)


def time_calls(function, inputs, repeats: int, budget_seconds: float) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls (at least one; stops once over budget)."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(inputs)["sequence_output"].numpy()
        timings.append(time.perf_counter() - start)
        if sum(timings) > budget_seconds:
            break
    return timings


def measure(name: str, batch_sizes: list[int], sequence_length: int, arguments) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from models import build_encoder, count_parameters, flops_per_token
    from pipeline import config as config_module

    config = config_module.load(name)
    encoder = build_encoder(config)
    function = tf.function(lambda batch: encoder(batch, training=False))
    result = {"name": name, "parameters": count_parameters(config).total,
              "flops_per_token": flops_per_token(config, sequence_length), "milliseconds": {}}
    rng = np.random.default_rng(0)
    for batch_size in batch_sizes:
        inputs = {
            "token_ids": tf.constant(rng.integers(1000, config.model.vocabulary_size,
                                                  (batch_size, sequence_length)), tf.int32),
            "segment_ids": tf.zeros((batch_size, sequence_length), tf.int32),
            "padding_mask": tf.ones((batch_size, sequence_length), tf.int32),
        }
        function(inputs)["sequence_output"].numpy()  # trace + warm-up
        repeats = arguments.small_repeats if batch_size < 8 else arguments.large_repeats
        timings = time_calls(function, inputs, repeats, arguments.budget_seconds)
        result["milliseconds"][batch_size] = (1000 * statistics.median(timings), len(timings))
        print(f"  {name} batch {batch_size}: median {1000 * statistics.median(timings):.1f} ms "
              f"over {len(timings)} calls", flush=True)
    keras.backend.clear_session()
    return result


def report(results: list[dict], batch_sizes: list[int], sequence_length: int) -> str:
    first, last = results[0]["milliseconds"], results[-1]["milliseconds"]
    base = {batch_size: ((first[batch_size][0] + last[batch_size][0]) / 2,) for batch_size in batch_sizes}
    header = ["config", "params", "GFLOPs/seq"]
    for batch_size in batch_sizes:
        header += [f"b{batch_size} ms", f"b{batch_size} speed-up"]
    header.append("paper's claim (speed-up vs BERT-Base)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        row = [result["name"], f"{result['parameters'] / 1e6:.1f}M",
               f"{result['flops_per_token'] * sequence_length / 1e9:.1f}"]
        for batch_size in batch_sizes:
            milliseconds, calls = result["milliseconds"][batch_size]
            row += [f"{milliseconds:.1f} (n={calls})", f"{base[batch_size][0] / milliseconds:.2f}x"]
        row.append(PAPER_CLAIMS.get(result["name"], ""))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    arguments = parse_arguments(argv)
    names = ["bert_base"] + [name for name in arguments.configs if name != "bert_base"]
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average before {load_before[0]:.2f}", flush=True)
    results = [measure(name, arguments.batch_sizes, arguments.sequence_length, arguments) for name in names]
    # Other jobs may share the cores: BERT-Base is timed again last, and speed-ups use the
    # mean of its two medians; the gap between them shows how much the load drifted.
    repeat = measure("bert_base", arguments.batch_sizes, arguments.sequence_length, arguments)
    repeat["name"] = "bert_base (timed again last)"
    results.append(repeat)
    load_after = os.getloadavg()
    print()
    print(report(results, arguments.batch_sizes, arguments.sequence_length))
    print(f"\nsequence length {arguments.sequence_length}; load average (1 min) before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
