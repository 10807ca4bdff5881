"""``trimbert predict``: a kept model on CSV and JSON Lines files, against the in-memory classifier."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from configs.errors import TrimbertError
from pipeline.finetune import data, kept_model, predict
from pipeline.finetune.tasks import TASKS, Example

SEQ_LEN = 32
WORDS = "the cat sat on a mat while rain fell over quiet hills and every dog ran far away".split()


def _text(length: int, offset: int) -> str:
    return " ".join(WORDS[(offset + step) % len(WORDS)] for step in range(length))


@pytest.fixture(scope="module")
def models_by_task(tiny_config, vocab_path, tmp_path_factory):
    """Task name -> (kept folder, the in-memory classifier) for a single-text, a pair and a regression task."""
    import keras

    import models

    kept = {}
    for seed, name in enumerate(("sst2", "mrpc", "stsb")):
        keras.utils.set_random_seed(seed)
        task = TASKS[name]
        classifier = models.build_classifier(models.build_encoder(tiny_config), task.num_labels)
        folder = kept_model.save(tmp_path_factory.mktemp(name) / "model", classifier, vocab_path, True, SEQ_LEN,
                                 task, tiny_config)
        kept[name] = (folder, classifier)
    return kept


def _expected_logits(classifier, vocab_path, texts: list[tuple[str, ...]]) -> np.ndarray:
    """The classifier's logits on the texts, tokenized by data.Tokenizer and run as one batch."""
    examples = [Example(row[0], row[1] if len(row) > 1 else None, None, index) for index, row in enumerate(texts)]
    encoded = data.Tokenizer(vocab_path, True).encode(examples, SEQ_LEN, regression=False)
    batch = data.pad_batch(encoded, np.arange(len(encoded)), regression=False)
    return np.asarray(classifier.predict_on_batch(batch.inputs), dtype=np.float64)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _predict(*arguments: str) -> int:
    from pipeline.cli import main as cli

    return cli.main(["predict", *arguments])


def test_csv_rows_are_the_classifiers_softmax_in_input_order(models_by_task, vocab_path, tmp_path, capsys):
    folder, classifier = models_by_task["sst2"]
    lengths = [3, 40, 1, 12, 7, 30, 2, 18, 5, 31, 9]  # mixed, so length-sorted batches reorder them
    texts = [(_text(length, index),) for index, length in enumerate(lengths)]
    source = tmp_path / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "sentence"])
        writer.writerows([[index, row[0]] for index, row in enumerate(texts)])
    out = tmp_path / "out.csv"
    assert _predict("--model", str(folder), "--input", str(source), "--out", str(out), "--batch-size", "3") == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["label", "probability_negative", "probability_positive"]
    expected = _softmax(_expected_logits(classifier, vocab_path, texts))
    written = np.array([[float(row["probability_negative"]), float(row["probability_positive"])] for row in rows])
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    assert [row["label"] for row in rows] == [("negative", "positive")[k] for k in np.argmax(expected, axis=1)]
    # One piece per word: 40 and 31 words do not fit seq_len 32 with [CLS] and [SEP]; 30 does.
    assert "; 2 truncated to the model's 32 tokens" in capsys.readouterr().out


def test_a_blank_line_of_a_one_column_file_is_a_row(models_by_task, vocab_path, tmp_path):
    """Editors write an empty one-column cell as an empty line: skipping it would shift every later row."""
    folder, classifier = models_by_task["sst2"]
    source = tmp_path / "in.csv"
    source.write_text("sentence\ngood film\n\nbad film\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert _predict("--model", str(folder), "--input", str(source), "--out", str(out)) == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = _softmax(_expected_logits(classifier, vocab_path, [("good film",), ("",), ("bad film",)]))
    written = np.array([[float(row["probability_negative"]), float(row["probability_positive"])] for row in rows])
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)


def test_jsonl_pairs_across_chunks_keep_input_order_and_count_truncation(models_by_task, vocab_path, tmp_path):
    folder, classifier = models_by_task["mrpc"]
    model = kept_model.load(folder)
    lengths = [(2, 3), (20, 20), (4, 1), (10, 5), (1, 1), (16, 14), (8, 30)]  # pairs over 29 pieces are cut
    texts = [(_text(a, index), _text(b, index + 3)) for index, (a, b) in enumerate(lengths)]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"left": a, "right": b, "n": i}) + "\n" for i, (a, b) in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    columns = predict.text_columns(model, ["left", "right"])
    progress: list[str] = []
    summary = predict.write_predictions(str(out), predict.output_columns(model.label_names, False),
                                        predict.predict_file(model, str(source), columns, batch_size=2, read_rows=3),
                                        log=progress.append, progress_seconds=0)
    assert (summary.rows, summary.truncated) == (7, 3)
    assert [line.split(" rows,")[0] for line in progress] == ["predict: 3", "predict: 6", "predict: 7"]
    assert all(line.endswith(" rows/s") for line in progress)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = _softmax(_expected_logits(classifier, vocab_path, texts))
    written = np.array([[row["probability_not_equivalent"], row["probability_equivalent"]] for row in rows])
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)


def test_regression_writes_the_score(models_by_task, vocab_path, tmp_path):
    folder, classifier = models_by_task["stsb"]
    texts = [(_text(5, 0), _text(6, 2)), (_text(2, 4), _text(9, 1)), (_text(11, 3), _text(1, 5))]
    source = tmp_path / "in.tsv"
    source.write_text("sentence1\tsentence2\n" + "".join(f"{a}\t{b}\n" for a, b in texts))
    out = tmp_path / "scores.tsv"
    assert _predict("--model", str(folder), "--input", str(source), "--out", str(out)) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "score"
    np.testing.assert_allclose([float(line) for line in lines[1:]],
                               _expected_logits(classifier, vocab_path, texts)[:, 0], rtol=1e-5, atol=1e-6)


def test_a_missing_column_names_the_file_and_its_columns(models_by_task, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text("id,review\n1,great\n")
    out = tmp_path / "out.csv"
    assert _predict("--model", str(models_by_task["sst2"][0]), "--input", str(source), "--out", str(out)) == 2
    assert f"{source} has no column 'sentence'; its columns: id, review" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["in.csv"]
    # Naming the column reads it.
    assert _predict("--model", str(models_by_task["sst2"][0]), "--input", str(source), "--out", str(out),
                    "--text-column", "review") == 0
    assert len(out.read_text().splitlines()) == 2


def test_an_error_midway_leaves_no_output_file(models_by_task, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    rows = [{"sentence": _text(3, index)} for index in range(5)] + [{"sentence": None}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    model = kept_model.load(models_by_task["sst2"][0])
    chunks = predict.predict_file(model, str(source), model.text_columns, batch_size=2, read_rows=2)
    with pytest.raises(TrimbertError, match=f"{source} line 6: column 'sentence' is empty"):
        predict.write_predictions(str(out), ["label"], chunks)  # two chunks are written before the bad row
    assert os.listdir(tmp_path) == ["in.jsonl"]  # neither the output nor its staging file


def test_an_incomplete_model_folder_is_a_clean_error(models_by_task, tmp_path, capsys):
    import shutil

    folder = shutil.copytree(models_by_task["sst2"][0], tmp_path / "model")
    (folder / "model.json").unlink()
    source = tmp_path / "in.csv"
    source.write_text("sentence\nfine\n")
    assert _predict("--model", str(folder), "--input", str(source), "--out", str(tmp_path / "o.csv")) == 2
    assert "incomplete model folder: no model.json" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


SERVE_SCRIPT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
texts = json.load(open(sys.argv[2]))
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
inputs = {name: tf.constant(values) for name, values in texts.items()}
outputs = serve(**inputs)
loaded = [name for name in sys.modules if name.split(".")[0] in ("pipeline", "models", "beam_jobs", "configs")]
print(json.dumps({"loaded": loaded, **{name: value.numpy().tolist() for name, value in outputs.items()
                                       if name != "label"}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["sst2", "mrpc"])
def test_predict_and_the_exported_saved_model_agree_on_dev_texts_in_fresh_processes(
        models_by_task, sentiment_dir, tmp_path, task_name):
    """`trimbert predict` and `trimbert export` each in a new process (so the kept model is loaded with
    nothing registered beforehand), then the SavedModel in a process importing only TensorFlow and
    tensorflow-text: the same probabilities within 1e-5 on real dev sentences."""
    import subprocess
    import sys

    from pipeline.assets.corpora import read_tsv

    folder, _ = models_by_task[task_name]
    sentences = [sentence for sentence, _ in read_tsv(sentiment_dir / "sentiment-movies" / "dev.tsv")][:48]
    columns = list(TASKS[task_name].text_features)
    rows = [dict(zip(columns, (sentence, sentences[-1 - index]), strict=False))
            for index, sentence in enumerate(sentences)]
    with open(tmp_path / "dev.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    cli = [sys.executable, "-m", "pipeline.cli"]
    subprocess.run([*cli, "predict", "--model", str(folder), "--input", str(tmp_path / "dev.csv"),
                    "--out", str(tmp_path / "predictions.csv"), "--batch-size", "5"], check=True)
    subprocess.run([*cli, "export", "--model", str(folder), "--format", "saved_model",
                    "--out", str(tmp_path / "serving")], check=True)
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as card:
        assert (tmp_path / "serving" / "README.md").read_text(encoding="utf-8") == card.read()  # the card goes along
    names = {"text": [row[columns[0]] for row in rows]}
    if len(columns) == 2:
        names["text_pair"] = [row[columns[1]] for row in rows]
    (tmp_path / "texts.json").write_text(json.dumps(names))
    served = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(tmp_path / "serving" / "1"),
                             str(tmp_path / "texts.json")], check=True, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    result = json.loads(served.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []  # no project module in the serving process
    with open(tmp_path / "predictions.csv", newline="", encoding="utf-8") as handle:
        predicted = list(csv.DictReader(handle))
    labels = TASKS[task_name].label_names
    expected = np.array([[float(row[f"probability_{name}"]) for name in labels] for row in predicted])
    assert expected.shape == (len(rows), len(labels))
    np.testing.assert_allclose(np.array(result["probabilities"]), expected, atol=1e-5)
