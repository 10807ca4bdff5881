"""CPU latency of a classifier through its SavedModel (raw text in) against the Keras model on ids.

    .venv/bin/python -m benchmarks.serving_latency [--configs tiny mini bert_base] [--seq-len 128]

``trimbert finetune`` reports latency through the SavedModel that ``trimbert export`` writes: raw
strings in, so the in-graph normalisation, WordPiece and packing are timed, and every row padded to
``seq_len`` in the graph. Before, it timed the Keras model on already padded ids
(``pipeline.finetune.run.measure_latency``). This benchmark puts both beside each other on the same
model, texts and batch sizes: each classifier (random weights, two classes; latency does not depend
on the weight values) is exported, and the two are timed in alternating rounds so that load drifting
during the run hits both alike. Printed: milliseconds per example (median over rounds of each round's
median call / batch size) and the ratio SavedModel / Keras per batch size, beside the machine's
measured matmul speed. Texts: the embedded sentiment-movies dev sentences.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "mini", "bert_base"])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per model and batch size")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per round (after 2 warm-up calls)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    import tensorflow as tf

    import models
    from configs import schema as config_lib
    from pipeline.assets import cache as assets
    from pipeline.clock import measure_matmul_peak
    from pipeline.finetune import data, sources
    from pipeline.finetune.run import measure_latency as keras_latency
    from pipeline.serving.latency import measure_latency as served_latency
    from pipeline.serving.saved_model import export_saved_model

    vocabulary = assets.ensure("vocab")
    tokens = vocabulary.read_text(encoding="utf-8").splitlines()
    examples = sources.load_examples("sentiment-movies", "validation")[:256]
    texts = [example.text_a for example in examples]
    tokenizer = data.Tokenizer(vocabulary, lowercase=True)
    encoded = tokenizer.encode(examples, args.seq_len, regression=False)
    print(f"matmul {measure_matmul_peak() / 1e9:.0f} GFLOP/s (best 2048^3 float32); {platform.processor() or 'CPU'}; "
          f"seq_len {args.seq_len}; {args.rounds} alternating rounds x {args.repeats} calls; ms per example")
    print("| config | batch | SavedModel, raw text | Keras, padded ids | SavedModel / Keras |")
    print("|---|---:|---:|---:|---:|")
    for name in args.configs:
        config = config_lib.load(name)
        tf.keras.backend.clear_session()
        classifier = models.build_classifier(models.build_encoder(config), 2)
        with tempfile.TemporaryDirectory() as folder:
            version = export_saved_model(classifier, tokens, True, args.seq_len, ("negative", "positive"), False,
                                         folder)
            loaded = tf.saved_model.load(str(version))
            for batch in args.batch_sizes:
                served, keras = [], []
                for _ in range(args.rounds):
                    served.append(served_latency(loaded, texts, batch_sizes=(batch,), repeats=args.repeats)[batch])
                    keras.append(keras_latency(classifier, encoded, args.seq_len, batch_size=batch,
                                               repeats=args.repeats))
                served_ms, keras_ms = statistics.median(served), statistics.median(keras)
                print(f"| {name} | {batch} | {served_ms:.3f} | {keras_ms:.3f} | {served_ms / keras_ms:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
