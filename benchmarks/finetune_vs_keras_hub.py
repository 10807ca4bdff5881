"""Fine-tuning MiniLM-L6 on sentiment-movies: ``trimbert finetune`` against keras-hub's BertTextClassifier.

Both start from the same folder (the ``minilm-l6`` asset), train on the same split (the
asset's train/dev/test files) at sequence length 64 for 2 epochs of batch 32 on this CPU,
and report dev and test accuracy and wall-clock per epoch. keras-hub runs its out-of-the-box
recipe (``BertTextClassifier.from_preset`` with its preprocessor at length 64, compiled
with its defaults: Adam 5e-5, no warm-up or decay). Ours runs ``pipeline.finetune.run``
(AdamW, 10% warm-up then linear decay, length-bucketed batches; the pooling, [CLS] pooler
or mean of the token vectors, is an option).

The machine's cores are shared, so the runs are interleaved to let load drift hit both:
keras-hub epoch 1, then our two epochs, then keras-hub epoch 2, for each seed.

By default each side runs its own recipe, so the times compare recipes: ours pads each batch to
its longest row (a multiple of 16) and tokenizes once before its clock starts, keras-hub pads
every row to 64 and tokenizes inside ``fit``. ``--like-for-like`` removes both differences from
our side: every batch padded to 64, and the training split's tokenization timed and added to our
seconds (``tokenize_seconds``, ``like_for_like_seconds``), so both clocks cover the same work.

    .venv/bin/python -m benchmarks.finetune_vs_keras_hub [--learning-rate 2e-4] [--pooling mean] \
        [--seeds 1,2,3] [--out DIR] [--like-for-like]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import typing

from configs.schema import Pooling

SEQUENCE_LENGTH = 64
BATCH_SIZE = 32
EPOCHS = 2
TASK = "sentiment-movies"


def keras_hub_epoch(classifier, dataset) -> float:
    started = time.perf_counter()
    classifier.fit(dataset, epochs=1, verbose=2)
    return time.perf_counter() - started


def keras_hub_accuracy(classifier, examples) -> float:
    import numpy as np
    import tensorflow as tf

    from pipeline.finetune import metrics

    texts = tf.constant([example.text_a for example in examples])
    logits = classifier.predict(tf.data.Dataset.from_tensor_slices(texts).batch(BATCH_SIZE), verbose=0)
    return metrics.accuracy(np.argmax(logits, axis=-1), [example.label for example in examples])


def tokenize_seconds(folder: pathlib.Path, examples) -> float:
    """Seconds our tokenizer takes on ``examples`` at length 64, as ``pipeline.finetune.run`` calls it."""
    from pipeline.finetune import data
    from pipeline.model_source import ModelSource

    started = time.perf_counter()
    vocabulary, lowercase = ModelSource.open(folder, "--init").vocabulary()
    data.Tokenizer(vocabulary, lowercase).encode(examples, SEQUENCE_LENGTH, regression=False)
    return time.perf_counter() - started


def run_seed(seed: int, learning_rate: float, pooling: str, out: pathlib.Path, folder: pathlib.Path,
             splits: dict, like_for_like: bool = False) -> dict:
    """One seed of both recipes, interleaved: keras-hub epoch 1, our two epochs, keras-hub epoch 2."""
    import keras
    import keras_hub
    import tensorflow as tf

    from configs import schema as config_lib
    from pipeline.finetune.run import TIMINGS_FILENAME, FinetuneOptions, run

    # keras-hub: the out-of-the-box recipe.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        str(folder), sequence_length=SEQUENCE_LENGTH)
    classifier = keras_hub.models.BertTextClassifier.from_preset(str(folder), num_classes=2,
                                                                preprocessor=preprocessor)
    texts = tf.constant([example.text_a for example in splits["train"]])
    labels = tf.constant([example.label for example in splits["train"]], dtype=tf.int64)
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(
        len(splits["train"]), seed=seed, reshuffle_each_iteration=True).batch(BATCH_SIZE)
    keras_hub_seconds = [keras_hub_epoch(classifier, dataset)]
    print(f"seed {seed}: keras-hub epoch 1: {keras_hub_seconds[0]:.1f} s", flush=True)

    # Ours, between keras-hub's two epochs.
    config = config_lib.load("bert_base", [
        f"finetune.seq_len={SEQUENCE_LENGTH}", f"finetune.batch_size={BATCH_SIZE}", f"finetune.epochs={EPOCHS}",
        f"finetune.learning_rate={learning_rate}", f"finetune.pooling={pooling}", f"finetune.seeds=[{seed}]"])
    ours_dir = out / f"trimbert-seed{seed}"
    record = run(config, FinetuneOptions(init=str(folder), task=TASK, out=str(ours_dir)))
    ours_seconds = json.loads((ours_dir / TIMINGS_FILENAME).read_text())["epoch_seconds"][str(seed)]
    tokenizing = tokenize_seconds(folder, splits["train"]) if like_for_like else None

    keras_hub_seconds.append(keras_hub_epoch(classifier, dataset))
    print(f"seed {seed}: keras-hub epoch 2: {keras_hub_seconds[1]:.1f} s", flush=True)
    return {"seed": seed,
            "ours": {"dev_accuracy": record.metric_mean["accuracy"],
                     "test_accuracy": record.test_metric_mean["accuracy"], "epoch_seconds": ours_seconds,
                     "fit_seconds": record.finetune_seconds, "latency_ms": record.inference_latency_ms,
                     "tokenize_seconds": tokenizing,
                     "like_for_like_seconds": record.finetune_seconds + tokenizing if like_for_like else None},
            "keras_hub": {"dev_accuracy": keras_hub_accuracy(classifier, splits["dev"]),
                          "test_accuracy": keras_hub_accuracy(classifier, splits["test"]),
                          "epoch_seconds": keras_hub_seconds, "fit_seconds": sum(keras_hub_seconds)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="our peak learning rate (chosen on dev)")
    parser.add_argument("--pooling", choices=typing.get_args(Pooling), default="cls", help="our head's input")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds; each runs both recipes")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/finetune_vs_keras_hub"))
    parser.add_argument("--like-for-like", action="store_true",
                        help="ours pads every batch to 64 and counts its tokenization, as keras-hub does")
    args = parser.parse_args(argv)
    if args.like_for_like:
        from pipeline.finetune import data

        # Batches are padded to a multiple of PAD_MULTIPLE; rows are at most 64 long, so a multiple
        # of 64 is exactly 64, keras-hub's fixed padding.
        data.PAD_MULTIPLE = SEQUENCE_LENGTH

    from pipeline.assets import cache as assets
    from pipeline.evaluation.record import mean_and_std
    from pipeline.finetune import sources

    folder = assets.ensure("minilm-l6")
    splits = {name: sources.load_examples(TASK, split)
              for name, split in (("train", "train"), ("dev", "validation"), ("test", "test"))}
    print(f"{TASK}: " + ", ".join(f"{len(examples)} {split}" for split, examples in splits.items()) + f"; {folder}",
          flush=True)
    runs = [run_seed(int(seed), args.learning_rate, args.pooling, args.out, folder, splits, args.like_for_like)
            for seed in args.seeds.split(",")]
    if args.like_for_like:
        print_like_for_like(runs)

    print("\n| recipe | seed | dev accuracy | test accuracy | epoch 1 (s) | epoch 2 (s) |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for name, key in (("trimbert finetune", "ours"), ("keras-hub BertTextClassifier", "keras_hub")):
        for seed_run in runs:
            result = seed_run[key]
            print(f"| {name} | {seed_run['seed']} | {result['dev_accuracy']:.4f} | {result['test_accuracy']:.4f} | "
                  f"{result['epoch_seconds'][0]:.1f} | {result['epoch_seconds'][1]:.1f} |")
        # Over seeds, with the sample standard deviation, as result.json reports them.
        mean, std = mean_and_std([{split: seed_run[key][f"{split}_accuracy"] for split in ("dev", "test")}
                                  for seed_run in runs])
        print(f"| {name} | mean ± std | {mean['dev']:.4f} ± {std['dev']:.4f} | "
              f"{mean['test']:.4f} ± {std['test']:.4f} | | |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(
        {"task": TASK, "sequence_length": SEQUENCE_LENGTH, "batch_size": BATCH_SIZE, "epochs": EPOCHS,
         "learning_rate": args.learning_rate, "pooling": args.pooling, "like_for_like": args.like_for_like,
         "runs": runs}, indent=2) + "\n")
    return 0


def print_like_for_like(runs: list[dict]) -> None:
    """Both sides padded to 64 with tokenization on the clock: ours fit + tokenize, keras-hub's two fits."""
    print("\n| like for like (padding 64, tokenizing timed) | seed | ours: fit + tokenize (s) | keras-hub fit (s) |"
          " ours / keras-hub |\n| --- | --- | --- | --- | --- |")
    for seed_run in runs:
        ours, theirs = seed_run["ours"]["like_for_like_seconds"], seed_run["keras_hub"]["fit_seconds"]
        print(f"| | {seed_run['seed']} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    raise SystemExit(main())
