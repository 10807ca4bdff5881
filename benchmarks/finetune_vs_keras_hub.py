"""Fine-tuning MiniLM-L6 on sentiment-movies: ``trimbert finetune`` against keras-hub's BertTextClassifier.

Both start from the same folder (the ``minilm-l6`` asset), train on the same split (the
asset's train/dev/test files) at sequence length 64 for 2 epochs of batch 32 on this CPU,
and report test accuracy and wall-clock per epoch. keras-hub runs its out-of-the-box
recipe (``BertTextClassifier.from_preset`` with its preprocessor at length 64, compiled
with its defaults: Adam 5e-5, no warm-up or decay). Ours runs ``pipeline.finetune.run``
(AdamW, 10% warm-up then linear decay, length-bucketed batches).

The machine's cores are shared, so the runs are interleaved to let load drift hit both:
keras-hub epoch 1, then our two epochs, then keras-hub epoch 2.

    .venv/bin/python -m benchmarks.finetune_vs_keras_hub [--learning-rate 1e-4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

SEQUENCE_LENGTH = 64
BATCH_SIZE = 32
EPOCHS = 2
TASK = "sentiment-movies"


def keras_hub_epoch(classifier, dataset) -> float:
    started = time.perf_counter()
    classifier.fit(dataset, epochs=1, verbose=2)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="our peak learning rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/finetune_vs_keras_hub"))
    args = parser.parse_args(argv)

    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    from pipeline import assets, glue, metrics
    from pipeline import config as config_lib
    from pipeline.finetune import TIMINGS_FILENAME, FinetuneOptions, run

    folder = assets.ensure("minilm-l6")
    train, test = (glue.load_examples(TASK, split) for split in ("train", "test"))
    print(f"{TASK}: {len(train)} train, {len(test)} test; {folder}", flush=True)

    # keras-hub: the out-of-the-box recipe.
    keras.utils.set_random_seed(args.seed)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        str(folder), sequence_length=SEQUENCE_LENGTH)
    classifier = keras_hub.models.BertTextClassifier.from_preset(str(folder), num_classes=2,
                                                                preprocessor=preprocessor)
    texts = tf.constant([example.text_a for example in train])
    labels = tf.constant([example.label for example in train], dtype=tf.int64)
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(
        len(train), seed=args.seed, reshuffle_each_iteration=True).batch(BATCH_SIZE)
    keras_hub_seconds = [keras_hub_epoch(classifier, dataset)]
    print(f"keras-hub epoch 1: {keras_hub_seconds[0]:.1f} s", flush=True)

    # Ours, between keras-hub's two epochs.
    config = config_lib.load("bert_base", [
        f"finetune.seq_len={SEQUENCE_LENGTH}", f"finetune.batch_size={BATCH_SIZE}", f"finetune.epochs={EPOCHS}",
        f"finetune.learning_rate={args.learning_rate}", f"finetune.seeds=[{args.seed}]"])
    ours_dir = args.out / "trimbert"
    record = run(config, FinetuneOptions(init=str(folder), task=TASK, out=str(ours_dir)))
    ours_seconds = json.loads((ours_dir / TIMINGS_FILENAME).read_text())["epoch_seconds"][str(args.seed)]

    keras_hub_seconds.append(keras_hub_epoch(classifier, dataset))
    print(f"keras-hub epoch 2: {keras_hub_seconds[1]:.1f} s", flush=True)
    test_texts = tf.constant([example.text_a for example in test])
    logits = classifier.predict(tf.data.Dataset.from_tensor_slices(test_texts).batch(BATCH_SIZE), verbose=0)
    keras_hub_accuracy = metrics.accuracy(np.argmax(logits, axis=-1), [example.label for example in test])

    ours_accuracy = record.test_metric_mean["accuracy"]
    rows = [("trimbert finetune", ours_accuracy, ours_seconds),
            ("keras-hub BertTextClassifier", keras_hub_accuracy, keras_hub_seconds)]
    print("\n| recipe | test accuracy | epoch 1 (s) | epoch 2 (s) | total (s) |\n| --- | --- | --- | --- | --- |")
    for name, accuracy, seconds in rows:
        print(f"| {name} | {accuracy:.4f} | {seconds[0]:.1f} | {seconds[1]:.1f} | {sum(seconds):.1f} |")
    summary = {"task": TASK, "sequence_length": SEQUENCE_LENGTH, "batch_size": BATCH_SIZE, "epochs": EPOCHS,
               "ours": {"test_accuracy": ours_accuracy, "epoch_seconds": ours_seconds,
                        "learning_rate": args.learning_rate, "latency_ms": record.inference_latency_ms},
               "keras_hub": {"test_accuracy": keras_hub_accuracy, "epoch_seconds": keras_hub_seconds}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
