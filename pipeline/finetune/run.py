"""Fine-tuning one pre-trained encoder on one task over several seeds; read it top to bottom.

1. model source: ``--init`` opened once (``pipeline.model_source.ModelSource``): our pre-training
   model directory (its ``encoder/`` export, else the latest checkpoint), one ``checkpoints/ckpt-N``
   of it, or a Hugging Face / keras-hub folder (also pruned models); plus the vocabulary the model
   was trained with
2. input: examples -> WordPiece ids -> length-bucketed batches (``pipeline.finetune.data``)
3. model and optimizer: encoder + classification (or regression) head, AdamW with
   warm-up and linear decay, no weight decay on biases and layernorms
4. train: Keras ``fit`` on one device, a compiled step, the clock running only while training
5. evals: dev metrics per seed, labelled test metrics (sentiment), GLUE submission
   files for unlabelled test splits (from the best-on-dev seed); the best seed's latency through its
   SavedModel at batch 1 and 32, raw text in (``pipeline.serving``), and of the Keras model on padded
   ids (pinned to /CPU:0; a visible GPU is timed apart into timings.json's accelerator_latency_ms)
6. record: ``OUT/result.json`` (``pipeline.evaluation.record.ResultRecord``), ``OUT/timings.json``
   (each seed's per-epoch wall-clock)
7. keep: the best-on-dev seed's classifier as ``OUT/model/`` with its model card
   (``pipeline.finetune.kept_model``), which ``trimbert predict`` runs and ``trimbert export`` serves;
   written before result.json (``FinetuneOptions.keep_model``)
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import threading
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

import models
import storage
from configs.errors import TrimbertError
from configs.schema import Config, FinetuneConfig
from pipeline import clock as clock_lib
from pipeline.clock import TrainingClock
from pipeline.evaluation import record as result_record
from pipeline.finetune import data, kept_model, model_card, sources
from pipeline.finetune import predict as predict_lib
from pipeline.finetune import tasks as task_registry
from pipeline.model_source import ModelSource
from pipeline.pretrain.optimizer import finetuning_optimizer
from pipeline.report import output

LATENCY_BATCH = 32
LATENCY_REPEATS = 10
SERVING_LATENCY_BATCHES = (1, 32)  # the SavedModel's latency: one request, and a batch as the Keras figure's
SUBMISSION_DIR = "submission"
TIMINGS_FILENAME = "timings.json"
DEFAULT_CONFIG = "bert_base"  # its finetune section is BERT's recipe (the dataclass defaults)


# ---------------------------------------------------------------------------
# Options and the per-task prediction rule
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """Where to read and write, beside the config's ``finetune`` section (how to train).

    Args:
        init: ``--init``: model directory, checkpoint, or Hugging Face / keras-hub folder; a path, or
            the source a caller already opened.
        task: a task name (``pipeline.finetune.tasks.TASKS``), e.g. ``mrpc`` or ``sentiment-movies``, or a
            :class:`pipeline.finetune.tasks.Task` (a user's own, ``pipeline.finetune.task_files``).
        out: output folder for ``result.json`` and submission files.
        glue_dir: a local GLUE data folder; ``None`` reads TensorFlow Datasets.
        tfds_data_dir: TensorFlow Datasets data folder.
        sentiment_dir: the sentiment asset folder; ``None`` uses the cache.
        vocabulary: the model's vocab.txt when it cannot be found from ``init``.
        keep_model: save the best seed's classifier as ``out/model`` (``pipeline.finetune.kept_model``);
            ``trimbert finetune`` asks for it; evaluations of many checkpoints and studies do not.
    """

    init: str | ModelSource
    task: str | task_registry.Task
    out: str
    glue_dir: str | None = None
    tfds_data_dir: str | None = None
    sentiment_dir: str | None = None
    vocabulary: str | None = None
    keep_model: bool = False


@dataclasses.dataclass(frozen=True)
class HeadRule:
    """How a task's head is trained and read: its loss, and logits [B, C] -> predictions [B]."""

    loss: Callable[[], keras.losses.Loss]
    predict: Callable[[np.ndarray], np.ndarray]


HEAD_RULES: dict[bool, HeadRule] = {  # keyed by Task.is_regression
    False: HeadRule(lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    lambda logits: np.argmax(logits, axis=-1)),
    True: HeadRule(lambda: keras.losses.MeanSquaredError(), lambda logits: logits[:, 0]),
}


@dataclasses.dataclass
class SeedRun:
    """One seed's outcome, kept until the best-on-dev seed is known."""

    result: result_record.SeedResult
    submissions: dict[str, np.ndarray]  # unlabelled test split -> predictions
    epoch_seconds: list[float]


@dataclasses.dataclass
class BestWeights:
    """A copy of the best-on-dev seed's weights so far, chosen as ``make_record`` chooses the best seed:
    the highest dev score, the first on ties. Every seed's classifier has the same architecture, so the
    weights fit any of them."""

    seed: int | None = None
    score: float = -math.inf
    weights: list[np.ndarray] | None = None

    def offer(self, classifier: keras.Model, result: result_record.SeedResult) -> None:
        """Keeps ``classifier``'s weights if ``result`` beats the best so far."""
        if self.weights is None or result.dev_metrics["score"] > self.score:
            self.seed, self.score, self.weights = result.seed, result.dev_metrics["score"], classifier.get_weights()


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


class Stopped(TrimbertError):
    """Fine-tuning stopped early because its caller asked (e.g. a scheduled evaluation lost its lease)."""


def run(config: Config, options: FinetuneOptions, log: Callable[[str], None] = print,
        stop: threading.Event | None = None) -> result_record.ResultRecord:
    """Fine-tunes ``options.init`` on ``options.task`` once per seed; writes and returns the record.

    Args:
        config: its ``finetune`` section is the recipe.
        options: where to read and write.
        log: progress printer.
        stop: once set, training stops at the next step boundary and :class:`Stopped` is raised
            (no record is written).

    Raises:
        Stopped: ``stop`` was set.
    """
    started_at = result_record.utc_now()
    finetune = config.finetune
    task = task_registry.task_of(options.task)
    metric_spec = task.metrics
    source = ModelSource.open(options.init, "--init")
    out = storage.makedirs(options.out)

    # === 2. Input ===
    vocabulary, lowercase = source.vocabulary(options.vocabulary)
    tokenizer = data.Tokenizer(vocabulary, lowercase)

    def load(split: str, limit: int | None = None) -> list[task_registry.Example]:
        return data.subsample(sources.load_examples(task, split, glue_dir=options.glue_dir,
                                                    tfds_data_dir=options.tfds_data_dir,  # TFDS reads gs:// itself
                                                    sentiment_dir=_path(options.sentiment_dir)), limit)

    def encode(examples: list[task_registry.Example]) -> data.EncodedExamples:
        return tokenizer.encode(examples, finetune.seq_len, task.is_regression)

    train = encode(load("train", finetune.max_train_examples))
    dev_examples = {split: load(split) for split, _ in metric_spec.splits}
    dev = {split: encode(examples) for split, examples in dev_examples.items()}
    test = {split: encode(load(split)) for split in task.test_splits}
    log(f"finetune {task.name}: {len(train):,} training examples"
        + (f" (a subset: finetune.max_train_examples={finetune.max_train_examples})"
           if finetune.max_train_examples else "")
        + f"; dev {', '.join(f'{split} {len(e):,}' for split, e in dev.items())}"
        + (f"; test {', '.join(f'{split} {len(e):,}' for split, e in test.items())}" if test else "")
        + f"; seq_len {finetune.seq_len}")

    devices = clock_lib.default_devices()  # Keras fit outside a strategy: the first GPU, else the CPU cores
    clock = TrainingClock(devices=devices.count)
    runs: list[SeedRun] = []
    best_weights = BestWeights()
    encoder = None
    for seed in finetune.seeds:
        keras.backend.clear_session()  # each seed starts from a clean graph and name scope
        keras.utils.set_random_seed(seed)
        encoder = source.encoder()
        if encoder.model_config.vocabulary_size != tokenizer.vocabulary_size:
            raise TrimbertError(f"{vocabulary} has {tokenizer.vocabulary_size} tokens, the model's embedding "
                                f"{encoder.model_config.vocabulary_size}: wrong --vocab?")
        if finetune.seq_len > encoder.model_config.max_sequence_length:
            raise TrimbertError(f"finetune.seq_len {finetune.seq_len} exceeds the model's "
                                f"{encoder.model_config.max_sequence_length} position embeddings")
        classifier, epoch_seconds = train_seed(encoder, task, train, finetune, seed, clock, log, stop)
        runs.append(evaluate_seed(classifier, task, dev, test, finetune.batch_size, seed, epoch_seconds, log))
        best_weights.offer(classifier, runs[-1].result)

    # === 5. Evals: submissions of the best seed, latency ===
    best = next(seed_run for seed_run in runs if seed_run.result.seed == best_weights.seed)
    for split, predictions in best.submissions.items():
        path = task_registry.write_submission(task, split, test[split].indices, predictions,
                                              storage.join(out, SUBMISSION_DIR))
        log(f"wrote {path} (seed {best.result.seed})")
    classifier.set_weights(best_weights.weights)
    latency = measure_latency(classifier, next(iter(dev.values())), finetune.seq_len)  # pinned to /CPU:0
    accelerators = tf.config.list_logical_devices("GPU")
    # Timed apart, so "CPU latency" never silently means the GPU's.
    accelerator_latency = (measure_latency(classifier, next(iter(dev.values())), finetune.seq_len,
                                           device=accelerators[0].name) if accelerators else None)
    serving = serving_latency(classifier, tokenizer, finetune.seq_len, task, next(iter(dev_examples.values())),
                              log)

    # === 6. Record ===
    record = result_record.make_record(
        checkpoint=source.path, model_config=source.config_name, parameters=encoder.count_params(),
        task=task, seed_results=[seed_run.result for seed_run in runs], finetune_seconds=clock.seconds,
        devices=devices.count, device_kind=devices.kind, started_at=started_at, inference_latency_ms=latency,
        serving_latency_ms=serving)
    if record.best_seed != best_weights.seed:  # one rule, two places: make_record's and BestWeights'
        raise AssertionError(f"best seed {record.best_seed} in the record, {best_weights.seed} kept")

    # === 7. Keep the best seed (before result.json, which marks the run done) ===
    if options.keep_model:
        latencies = [model_card.Latency("SavedModel", "CPU", batch, finetune.seq_len, milliseconds)
                     for batch, milliseconds in (serving or {}).items()]
        folder = kept_model.save(
            storage.join(out, kept_model.FOLDER), classifier, vocabulary, lowercase, finetune.seq_len, task,
            kept_model.model_config(source.config, source.config_name, config), record, base_model=source.path,
            latencies=[*latencies, model_card.Latency("Keras", "CPU", LATENCY_BATCH, finetune.seq_len, latency)])
        log(f"kept seed {best_weights.seed} in {folder} (README.md is its model card; run it with "
            f"trimbert predict --model {folder} --input FILE --out FILE)")
    path = record.save(storage.join(out, result_record.RESULT_FILENAME))
    # Per-epoch wall-clock (the first epoch includes tracing) beside the record, whose schema is fixed.
    storage.write_json(storage.join(out, TIMINGS_FILENAME),
                       {"epoch_seconds": {str(seed_run.result.seed): seed_run.epoch_seconds for seed_run in runs},
                        "cpu_latency_ms": latency, "accelerator_latency_ms": accelerator_latency,
                        "accelerator": accelerators[0].name if accelerators else None})
    spread = output.spread_known(len(record.seeds))  # a std over fewer seeds is not printed
    summary = ", ".join(f"{name} {record.metric_mean[name]:.4f}"
                        + (f" ± {record.metric_std[name]:.4f}" if spread else "") for name in record.metric_mean)
    log(f"{task.name} dev over seeds {record.seeds}: {summary}; best seed {record.best_seed}")
    if record.test_metric_mean:
        log("test: " + ", ".join(f"{name} {value:.4f}" for name, value in record.test_metric_mean.items()))
    log(f"fine-tune {record.finetune_seconds:.1f} s ({record.finetune_accelerator_hours:.5f} accelerator-hours); "
        f"pre-train accelerator-hours {record.pretrain_accelerator_hours}; SavedModel CPU latency "
        + (", ".join(f"batch {batch} {milliseconds:.3f}" for batch, milliseconds in serving.items())
           + f" ms/example (raw text in, length {finetune.seq_len})" if serving else "not measured")
        + f"; Keras {latency:.3f} ms/example (batch {LATENCY_BATCH})"
        + (f"; {accelerators[0].name} latency {accelerator_latency:.3f} ms/example" if accelerators else "")
        + f"; wrote {path}")
    return record


# ---------------------------------------------------------------------------
# 3-4. Model, optimizer and training
# ---------------------------------------------------------------------------


class StopWhenSet(keras.callbacks.Callback):
    """Ends ``fit`` after the step during which ``event`` was set (Keras checks between steps)."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self.event = event
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.event.is_set():
            self.model.stop_training = True


class _Progress(keras.callbacks.Callback):
    """Prints loss and learning rate every ``log_every`` steps and the wall-clock of each epoch."""

    def __init__(self, seed: int, total_steps: int, log: Callable[[str], None]):
        super().__init__()
        self.seed, self.total_steps, self.log = seed, total_steps, log
        self.log_every = max(1, total_steps // 10)
        self.step = 0
        self.epoch_seconds: list[float] = []
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.log_every == 0 or self.step == self.total_steps:
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.log(f"  seed {self.seed} step {self.step}/{self.total_steps} loss {logs['loss']:.4f} "
                     f"learning rate {rate:.2e}")

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_started)
        self.log(f"  seed {self.seed} epoch {epoch + 1}: {self.epoch_seconds[-1]:.1f} s, loss {logs['loss']:.4f}")


def train_seed(encoder: models.Encoder, task: task_registry.Task, train: data.EncodedExamples, finetune: FinetuneConfig,
               seed: int, clock: TrainingClock, log: Callable[[str], None],
               stop: threading.Event | None = None) -> tuple[keras.Model, list[float]]:
    """Builds the classifier on ``encoder`` and trains it; returns it and each epoch's seconds.

    ``finetune.epochs`` may be fractional: the steps are ``round(epochs x batches per
    pass)``, run as ``ceil(epochs)`` Keras epochs of equal length.

    Args:
        encoder: a freshly loaded pre-trained encoder.
        task: the task (classes or regression).
        train: the packed training split.
        finetune: batch size, epochs, learning rate, warm-up, weight decay, epsilon, clip norm, head dropout, pooling.
        seed: shuffling seed (Keras' global seed is set by the caller).
        clock: runs only while ``fit`` trains.
        log: progress printer.
        stop: once set, training ends at the next step boundary and :class:`Stopped` is raised.
    """
    batches_per_pass = math.ceil(len(train) / finetune.batch_size)
    rounds = math.ceil(finetune.epochs)
    steps_per_round = max(1, math.ceil(round(finetune.epochs * batches_per_pass) / rounds))
    total_steps = rounds * steps_per_round
    classifier = models.build_classifier(encoder, task.num_labels, finetune.dropout, finetune.pooling)
    rule = HEAD_RULES[task.is_regression]
    classifier.compile(optimizer=finetuning_optimizer(finetune, total_steps), loss=rule.loss())
    label_spec = tf.TensorSpec([None, 1] if task.is_regression else [None],
                               tf.float32 if task.is_regression else tf.int64)
    input_spec = {name: tf.TensorSpec([None, None], tf.int32)
                  for name in ("token_ids", "segment_ids", "padding_mask")}
    dataset = tf.data.Dataset.from_generator(
        lambda: data.training_batches(train, finetune.batch_size, rounds, steps_per_round, seed,
                                      task.is_regression),
        output_signature=(input_spec, label_spec)).prefetch(4)
    progress = _Progress(seed, total_steps, log)
    log(f"seed {seed}: {total_steps} steps of batch {finetune.batch_size} ({rounds} epoch(s) of {steps_per_round}), "
        f"peak learning rate {finetune.learning_rate:g}")
    stopper = StopWhenSet(stop or threading.Event())
    clock.start()
    classifier.fit(dataset, epochs=rounds, steps_per_epoch=steps_per_round, callbacks=[progress, stopper],
                   verbose=0, shuffle=False)  # the generator shuffles and buckets by length itself
    clock.stop()
    if stopper.event.is_set():
        raise Stopped(f"seed {seed}: fine-tuning stopped on request after step {stopper.steps} of {total_steps}")
    return classifier, progress.epoch_seconds


# ---------------------------------------------------------------------------
# 5. Evals
# ---------------------------------------------------------------------------


def predict(classifier: keras.Model, encoded: data.EncodedExamples, batch_size: int,
            regression: bool) -> np.ndarray:
    """Predicted class indices (or scores) for every example, in the split's order."""
    return HEAD_RULES[regression].predict(predict_lib.logits(classifier, encoded, batch_size))


def evaluate_seed(classifier: keras.Model, task: task_registry.Task, dev: dict[str, data.EncodedExamples],
                  test: dict[str, data.EncodedExamples], batch_size: int, seed: int, epoch_seconds: list[float],
                  log: Callable[[str], None]) -> SeedRun:
    """Dev metrics, labelled-test metrics and unlabelled-test predictions of one trained seed."""
    dev_predictions = {split: (predict(classifier, encoded, batch_size, task.is_regression), encoded.labels)
                       for split, encoded in dev.items()}
    dev_metrics = task.evaluate(dev_predictions)
    test_metrics: dict[str, float] = {}
    submissions: dict[str, np.ndarray] = {}
    for split, encoded in test.items():
        predictions = predict(classifier, encoded, batch_size, task.is_regression)
        if encoded.labels is None:
            submissions[split] = predictions
        else:
            test_metrics.update(task.evaluate_split(predictions, encoded.labels))
    log(f"seed {seed} dev: " + ", ".join(f"{name} {value:.4f}" for name, value in dev_metrics.items())
        + ("; test: " + ", ".join(f"{name} {value:.4f}" for name, value in test_metrics.items())
           if test_metrics else ""))
    return SeedRun(result_record.SeedResult(seed, dev_metrics, test_metrics), submissions, epoch_seconds)


def measure_latency(classifier: keras.Model, encoded: data.EncodedExamples, seq_len: int,
                    batch_size: int = LATENCY_BATCH, repeats: int = LATENCY_REPEATS,
                    device: str = "/CPU:0") -> float:
    """Inference milliseconds per example on ``device`` (the CPU unless told): the median of
    ``repeats`` full batches at ``seq_len``.

    Args:
        classifier: the fine-tuned model.
        encoded: examples to fill the batch with (repeated if fewer than ``batch_size``).
        seq_len: every row is padded to this length, so models compare at equal work.
        batch_size: rows per call.
        repeats: timed calls after two warm-up calls.
        device: where the ops run; without a pin they go to the default device, a GPU if one is visible.
    """
    positions = np.resize(np.arange(len(encoded)), batch_size)
    batch = data.pad_batch(encoded, positions, regression=False, length=seq_len)
    classifier.predict_function = None  # retrace under this device scope, not reuse another device's graph
    with tf.device(device):
        seconds = clock_lib.median_call_seconds(lambda: classifier.predict_on_batch(batch.inputs), repeats, 2)
    return 1000.0 * seconds / batch_size


def serving_latency(classifier: keras.Model, tokenizer: data.Tokenizer, seq_len: int, task: task_registry.Task,
                    examples: list[task_registry.Example], log: Callable[[str], None]) -> dict[int, float] | None:
    """CPU milliseconds per example through the classifier's SavedModel at batch sizes
    ``SERVING_LATENCY_BATCHES``, raw text in (``pipeline.serving.latency.saved_model_latency``).

    The export goes to a temporary folder. A failure there (a full temporary disk, say) costs the figure,
    not the trained seeds: it is logged as a warning and the latency recorded as not measured.

    Args:
        classifier: the kept (best-seed) classifier.
        tokenizer: its vocabulary and casing.
        seq_len: the export's fixed length.
        task: its label names and whether it reads pairs.
        examples: texts to time on (the task's first dev split).
        log: where the warning goes.
    """
    from pipeline.serving.latency import saved_model_latency

    pairs = [example.text_b or "" for example in examples] if task.is_pair else None
    try:
        return saved_model_latency(classifier, tokenizer.tokens, tokenizer.lowercase, seq_len, task.label_names,
                                   [example.text_a for example in examples], pairs, SERVING_LATENCY_BATCHES,
                                   repeats=LATENCY_REPEATS)
    except (OSError, tf.errors.OpError, TrimbertError) as error:
        log(f"warning: the SavedModel latency was not measured ({type(error).__name__}: {error}); the run's "
            f"results are kept")
        return None


def _path(value: str | None) -> pathlib.Path | None:
    """A local-only folder option (TFDS data, the sentiment asset) as a path."""
    return None if value is None else pathlib.Path(value)
