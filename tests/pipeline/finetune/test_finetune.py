"""Fine-tuning: packing, bucketing, the GLUE fixture folder (pairs, regression), sentiment, the CLI."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from pipeline.finetune import data as finetune_data
from pipeline.finetune.tasks import Example

FIXTURE_GLUE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "glue"
# The shared tiny encoder (conftest.tiny_encoder_dir) fine-tunes in seconds with these.
FAST_FINETUNE = ["finetune.seq_len=32", "finetune.batch_size=4", "finetune.epochs=1",
                 "finetune.learning_rate=1e-3"]


def _gold(task_folder: str, split: str, column: str) -> np.ndarray:
    """A GLUE fixture split's labels, read straight from the TSV (file order)."""
    import csv

    with open(FIXTURE_GLUE / task_folder / f"{split}.tsv", encoding="utf-8", newline="") as handle:
        return np.array([float(row[column]) for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)])


def _assert_seeds_and_best(record: dict, expected_dev: dict[int, dict[str, float]]):
    """Per-seed dev metrics as expected, their mean, and the best seed as the first argmax of the score."""
    seeds = list(expected_dev)
    assert record["seeds"] == seeds
    for result in record["seed_results"]:
        for name, value in expected_dev[result["seed"]].items():
            assert result["dev_metrics"][name] == pytest.approx(value, abs=1e-6), (result["seed"], name)
    for name in record["metric_mean"]:
        assert record["metric_mean"][name] == pytest.approx(np.mean([expected_dev[s][name] for s in seeds]))
    assert record["best_seed"] == seeds[int(np.argmax([expected_dev[s]["score"] for s in seeds]))]


def _finetune(arguments: list[str]) -> int:
    from pipeline.cli import main as cli

    return cli.main(["finetune", *arguments])


# --- packing and batching -------------------------------------------------------------


def test_truncate_cuts_the_longer_text_first():
    pieces_a, pieces_b = finetune_data.truncate(list(range(10)), list(range(3)), seq_len=11)
    assert (len(pieces_a), len(pieces_b)) == (5, 3)
    assert pieces_a == [0, 1, 2, 3, 4]
    single, none = finetune_data.truncate(list(range(10)), None, seq_len=6)
    assert single == [0, 1, 2, 3] and none is None


def test_pairs_pack_as_cls_a_sep_b_sep_with_segments(vocab_path):
    tokenizer = finetune_data.Tokenizer(vocab_path)
    encoded = tokenizer.encode([Example("The cat sat.", "A dog ran far away today.", 1, 7)], seq_len=9,
                               regression=False)
    tokens, segments = encoded.token_ids[0], encoded.segment_ids[0]
    assert len(tokens) == 9
    assert tokens[0] == tokenizer.cls_id and tokens[-1] == tokenizer.sep_id
    separator = list(tokens).index(tokenizer.sep_id)
    assert set(segments[: separator + 1]) == {0} and set(segments[separator + 1:]) == {1}
    assert encoded.labels.tolist() == [1] and encoded.indices.tolist() == [7]
    unlabelled = tokenizer.encode([Example("hello", None, None, 3)], seq_len=9, regression=False)
    assert unlabelled.labels is None and unlabelled.segment_ids[0].tolist() == [0, 0, 0]


def test_batches_pad_to_a_multiple_and_cover_every_example():
    rows = [np.arange(1, length + 1, dtype=np.int32) for length in (3, 20, 5, 40, 7, 9)]
    encoded = finetune_data.EncodedExamples(rows, [np.zeros_like(row) for row in rows],
                                            np.arange(6), np.arange(6), pad_id=0)
    order = finetune_data.training_order(encoded.lengths, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(order).tolist()) == list(range(6))
    batch = finetune_data.pad_batch(encoded, np.array([0, 2]), regression=False)
    assert batch.inputs["token_ids"].shape == (2, finetune_data.PAD_MULTIPLE)
    assert batch.inputs["padding_mask"].sum() == 3 + 5
    assert finetune_data.pad_batch(encoded, np.array([3]), regression=True).labels.shape == (1, 1)
    steps = list(finetune_data.training_batches(encoded, 4, epochs=2, steps_per_epoch=3, seed=1,
                                                regression=False))
    assert len(steps) == 6  # two passes of two batches, then part of a third: reshuffled each pass


# --- end to end on the GLUE fixture folder ------------------------------------------


def test_pair_task_writes_result_and_submission(tiny_encoder_dir, tmp_path, seed_predictions):
    out = tmp_path / "mrpc"
    assert _finetune(["--init", str(tiny_encoder_dir), "--task", "MRPC", "--glue-dir", str(FIXTURE_GLUE),
                      "--seeds", "1,2", "--out", str(out), *sum((["--set", o] for o in FAST_FINETUNE), [])]) == 0
    record = json.loads((out / "result.json").read_text())
    assert record["task"] == "mrpc"
    # Accuracy and F1 of positive class 1 from each seed's dev predictions and the TSV's Quality column.
    gold = _gold("MRPC", "dev", "Quality").astype(int)
    expected = {}
    for seed, predictions in seed_predictions.items():
        predicted = predictions["validation"]
        true_positives = int(np.sum((predicted == 1) & (gold == 1)))
        wrong = int(np.sum(predicted != gold))
        f1 = 2 * true_positives / (2 * true_positives + wrong) if true_positives + wrong else 0.0
        accuracy = float(np.mean(predicted == gold))
        expected[seed] = {"f1": f1, "accuracy": accuracy, "score": (f1 + accuracy) / 2}
    _assert_seeds_and_best(record, expected)
    assert record["parameters"] > 0 and record["finetune_seconds"] > 0
    assert record["inference_latency_ms"] > 0
    # The tables' latency: the best seed's SavedModel on raw dev text, one request and a batch of 32.
    assert sorted(record["serving_latency_ms"]) == ["1", "32"]
    assert all(0 < value < 1e4 for value in record["serving_latency_ms"].values())
    # The record's latency is the CPU's; with no GPU visible (conftest) no accelerator is timed.
    timings = json.loads((out / "timings.json").read_text())
    assert timings["cpu_latency_ms"] == record["inference_latency_ms"]
    assert timings["accelerator_latency_ms"] is None and timings["accelerator"] is None
    assert record["pretrain_accelerator_hours"] is None  # an imported folder has no pre-training summary
    # The submission holds the best seed's test predictions, indexed by the test file's ids.
    submission = (out / "submission" / "MRPC.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction"
    best_test = seed_predictions[record["best_seed"]]["test"]
    assert [line.split("\t")[1] for line in submission[1:]] == [str(int(p)) for p in best_test]
    assert len(submission) == 1 + 2


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)  # the fixtures' scores have no ties


def test_regression_task_scores_pearson_and_writes_scores(tiny_encoder_dir, tmp_path, seed_predictions):
    out = tmp_path / "stsb"
    overrides = [*FAST_FINETUNE, "finetune.pooling=mean"]  # the mean-pooled head, on a regression task
    assert _finetune(["--init", str(tiny_encoder_dir), "--task", "sts-b", "--glue-dir", str(FIXTURE_GLUE),
                      "--out", str(out), *sum((["--set", o] for o in overrides), [])]) == 0
    record = json.loads((out / "result.json").read_text())
    assert set(record["metric_mean"]) == {"pearson", "spearman", "score"}
    gold = _gold("STS-B", "dev", "score")
    predicted = seed_predictions[1]["validation"].astype(np.float64)
    assert len(set(gold.tolist())) == len(gold) and np.std(predicted) > 0  # the correlations are defined
    pearson = float(np.corrcoef(predicted, gold)[0, 1])
    spearman = float(np.corrcoef(_ranks(predicted), _ranks(gold))[0, 1])
    _assert_seeds_and_best(record, {1: {"pearson": pearson, "spearman": spearman,
                                        "score": (pearson + spearman) / 2}})
    rows = (out / "submission" / "STS-B.tsv").read_text().splitlines()[1:]
    written = [float(line.split("\t")[1]) for line in rows]
    np.testing.assert_allclose(written, seed_predictions[1]["test"], rtol=0, atol=5.1e-5)  # 4 decimals


def _sentiment_examples(split: str):
    from pipeline.finetune import sources

    return sources.load_examples("sentiment-movies", split)


def test_sentiment_task_reports_test_metrics(tiny_encoder_dir, tmp_path, seed_predictions):
    out = tmp_path / "movies"
    assert _finetune(["--init", str(tiny_encoder_dir), "--task", "sentiment-movies", "--max-train-examples", "16",
                      "--out", str(out), *sum((["--set", o] for o in FAST_FINETUNE), [])]) == 0
    record = json.loads((out / "result.json").read_text())
    assert set(record["test_metric_mean"]) == {"accuracy", "score"}
    # Gold test labels from the task's own loader (its parsing is tested in test_sources); the
    # accuracy is then recomputed here from each seed's predictions.
    gold = np.array([example.label for example in _sentiment_examples("test")])
    test_accuracy = {seed: float(np.mean(predictions["test"] == gold))
                     for seed, predictions in seed_predictions.items()}
    for result in record["seed_results"]:
        assert result["test_metrics"]["accuracy"] == pytest.approx(test_accuracy[result["seed"]])
    assert record["test_metric_mean"]["accuracy"] == pytest.approx(np.mean(list(test_accuracy.values())))
    assert not (out / "submission").exists()  # labelled test split: metrics, no submission


def test_mnli_through_tensorflow_datasets_end_to_end(tiny_encoder_dir, tmp_path):
    """No --glue-dir: train and both dev splits come from tfds glue/mnli (mocked offline),
    and the unlabelled test splits (label -1, as TFDS ships them) become MNLI-m/-mm submissions."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "far", "away"]

    def as_dataset(self, split, *args, **kwargs):
        unlabelled = str(split).startswith("test")
        rows = [{"premise": " ".join(words[(i + j) % 10] for j in range(6)),
                 "hypothesis": " ".join(words[(2 * i + j) % 10] for j in range(3)),
                 "label": -1 if unlabelled else i % 3, "idx": i} for i in range(12)]
        return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature={
            "premise": tf.TensorSpec((), tf.string), "hypothesis": tf.TensorSpec((), tf.string),
            "label": tf.TensorSpec((), tf.int64), "idx": tf.TensorSpec((), tf.int32)})

    out = tmp_path / "mnli"
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        assert _finetune(["--init", str(tiny_encoder_dir), "--task", "mnli", "--out", str(out),
                          *sum((["--set", o] for o in FAST_FINETUNE), [])]) == 0
    record = json.loads((out / "result.json").read_text())
    assert record["task"] == "mnli"
    assert set(record["metric_mean"]) == {"accuracy_matched", "accuracy_mismatched", "score"}
    assert record["test_metric_mean"] == {}
    for name in ("MNLI-m.tsv", "MNLI-mm.tsv"):
        rows = (out / "submission" / name).read_text().splitlines()
        assert rows[0] == "index\tprediction" and len(rows) == 1 + 12
        assert [int(row.split("\t")[0]) for row in rows[1:]] == list(range(12))
        assert {row.split("\t")[1] for row in rows[1:]} <= {"entailment", "neutral", "contradiction"}


def test_unknown_init_is_a_clean_error(tmp_path, capsys):
    assert _finetune(["--init", str(tmp_path), "--task", "mrpc", "--out", str(tmp_path / "x")]) == 2
    assert "not a trimbert model directory" in capsys.readouterr().err


def test_an_empty_split_exits_non_zero_naming_the_file(tiny_encoder_dir, tmp_path, capsys):
    import shutil

    glue = pathlib.Path(shutil.copytree(FIXTURE_GLUE, tmp_path / "glue"))
    train = glue / "MRPC" / "train.tsv"
    train.write_text(train.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")  # header only
    code = _finetune(["--init", str(tiny_encoder_dir), "--task", "mrpc", "--glue-dir", str(glue),
                      "--out", str(tmp_path / "out"), *sum((["--set", o] for o in FAST_FINETUNE), [])])
    errors = capsys.readouterr().err
    assert code == 2, errors
    assert f"MRPC train: {train} holds no examples" in errors
    assert not (tmp_path / "out" / "result.json").exists()


def test_a_failed_latency_export_costs_the_figure_not_the_run(monkeypatch, tiny_config, vocab_path):
    """The SavedModel is written to a temporary folder after every seed has trained: a full disk there
    must not throw the trained seeds away."""
    import models
    from pipeline.finetune import run
    from pipeline.finetune.tasks import TASKS
    from pipeline.serving import latency

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(latency, "saved_model_latency", full_disk)
    classifier = models.build_classifier(models.build_encoder(tiny_config), 2)
    lines = []
    figures = run.serving_latency(classifier, finetune_data.Tokenizer(vocab_path), 32, TASKS["sst2"],
                                  [Example("a film", None, 1, 0)], lines.append)
    assert figures is None
    assert lines == ["warning: the SavedModel latency was not measured (OSError: [Errno 28] No space left on "
                     "device); the run's results are kept"]
