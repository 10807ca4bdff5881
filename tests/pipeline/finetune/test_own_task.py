"""A user's own task end to end: `trimbert finetune` on a 3-class CSV and a regression JSON Lines file,
`trimbert evaluate` and `trimbert study layer-drop|trims` on a two-class task; the metrics recomputed from
each seed's predictions and the files' labels."""

from __future__ import annotations

import csv
import json
import pathlib
import shutil

import numpy as np
import pytest

from pipeline.finetune import metrics

FAST_FINETUNE = ["finetune.seq_len=32", "finetune.batch_size=4", "finetune.epochs=1",
                 "finetune.learning_rate=1e-3"]
WORDS = {"red": ["apple", "cherry", "blood", "rose"], "green": ["grass", "leaf", "frog", "lime"],
         "blue": ["sky", "sea", "ocean", "jeans"]}


def _sets(flags=FAST_FINETUNE) -> list[str]:
    return [argument for override in flags for argument in ("--set", override)]


def _colour_rows(count: int, offset: int) -> list[dict]:
    colours = list(WORDS)
    return [{"sentence": f"the {WORDS[colour][(i + offset) % 4]} is nice", "colour": colour}
            for i in range(count) for colour in [colours[(i + offset) % 3]]]


def _write_csv(path: pathlib.Path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _cli(arguments: list[str]) -> int:
    from pipeline.cli import main as cli

    return cli.main(arguments)


def test_three_class_csv_reports_accuracy_and_macro_f1(tiny_encoder_dir, tmp_path, seed_predictions, capsys):
    train = _write_csv(tmp_path / "train.csv", _colour_rows(24, 0))
    dev_rows, test_rows = _colour_rows(9, 1), _colour_rows(6, 2)
    dev, test = _write_csv(tmp_path / "dev.csv", dev_rows), _write_csv(tmp_path / "test.csv", test_rows)
    out = tmp_path / "out"
    assert _cli(["finetune", "--init", str(tiny_encoder_dir), "--task", "colours", "--train", train, "--dev", dev,
                 "--test", test, "--text-column", "sentence", "--label-column", "colour", "--seeds", "1,2",
                 "--out", str(out), *_sets()]) == 0, capsys.readouterr().err
    record = json.loads((out / "result.json").read_text())
    assert record["task"] == "colours"
    assert set(record["metric_mean"]) == {"accuracy", "macro_f1", "score"}  # no matthews with 3 classes
    assert set(record["test_metric_mean"]) == {"accuracy", "macro_f1", "score"}
    # Classes sorted as strings from the training file: blue 0, green 1, red 2.
    classes = ["blue", "green", "red"]
    gold = {"validation": np.array([classes.index(row["colour"]) for row in dev_rows]),
            "test": np.array([classes.index(row["colour"]) for row in test_rows])}
    for result in record["seed_results"]:
        predicted = seed_predictions[result["seed"]]
        for split, values in (("validation", result["dev_metrics"]), ("test", result["test_metrics"])):
            assert values["accuracy"] == pytest.approx(float(np.mean(predicted[split] == gold[split])))
            assert values["macro_f1"] == pytest.approx(metrics.macro_f1(predicted[split], gold[split]))
            assert values["score"] == values["macro_f1"]
    scores = [result["dev_metrics"]["score"] for result in record["seed_results"]]
    assert record["best_seed"] == record["seeds"][int(np.argmax(scores))]
    assert not (out / "submission").exists()  # no GLUE submission for a user task


def test_regression_jsonl_reports_pearson_and_spearman(tiny_encoder_dir, tmp_path, seed_predictions):
    rows = [{"text": f"{'very ' * (i % 4)}good {word}", "score": float(i % 4) + 0.25 * (i % 3)}
            for i, word in enumerate(["film", "play", "book", "song", "show", "game"] * 3)]
    for name, part in (("train", rows), ("dev", rows[:8])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
    out = tmp_path / "out"
    assert _cli(["finetune", "--init", str(tiny_encoder_dir), "--task", "goodness", "--regression",
                 "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl"),
                 "--text-column", "text", "--label-column", "score", "--out", str(out), *_sets()]) == 0
    record = json.loads((out / "result.json").read_text())
    assert set(record["metric_mean"]) == {"pearson", "spearman", "score"} and record["test_metric_mean"] == {}
    predicted, gold = seed_predictions[1]["validation"], np.array([row["score"] for row in rows[:8]])
    values = record["seed_results"][0]["dev_metrics"]
    assert values["pearson"] == pytest.approx(metrics.pearson(predicted, gold))
    assert values["spearman"] == pytest.approx(metrics.spearman(predicted, gold))
    assert values["score"] == pytest.approx((values["pearson"] + values["spearman"]) / 2)


def test_a_bad_dev_file_fails_before_training_and_writes_nothing(tiny_encoder_dir, tmp_path, capsys):
    train = _write_csv(tmp_path / "train.csv", _colour_rows(6, 0))
    dev = _write_csv(tmp_path / "dev.csv", [*_colour_rows(3, 0), {"sentence": "the sun", "colour": "yellow"}])
    code = _cli(["finetune", "--init", str(tiny_encoder_dir), "--task", "colours", "--train", train, "--dev", dev,
                 "--text-column", "sentence", "--label-column", "colour", "--out", str(tmp_path / "out"), *_sets()])
    assert code == 2
    assert f"{dev}: label 'yellow' in 1 row(s) (first: {dev} line 5) never occurs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _pair_files(tmp_path) -> list[str]:
    """A two-class sentence-pair task (same colour or not) as TSV files, and its flags."""
    colours = list(WORDS)
    rows = [{"first": f"a {WORDS[colours[i % 3]][i % 4]}", "second": f"a {WORDS[colours[(i + i // 3) % 3]][0]}",
             "same": str(int(i // 3 % 3 == 0))} for i in range(12)]
    for name, part in (("train", rows), ("dev", rows[:6])):
        lines = ["first\tsecond\tsame", *("\t".join(row.values()) for row in part)]
        (tmp_path / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["--train", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv"), "--text-column", "first",
            "--text-column", "second", "--label-column", "same"]


def test_evaluate_fine_tunes_every_checkpoint_on_the_users_task(tiny_model_dir, tmp_path, capsys):
    from pipeline.evaluation.store import ResultStore

    model_dir = pathlib.Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny-run"))
    store = tmp_path / "store.sqlite"
    arguments = ["evaluate", "--model-dir", str(model_dir), "--tasks", "pairs", "--store", str(store),
                 *_pair_files(tmp_path), *_sets()]
    assert _cli([*arguments, "--pending"]) == 0, capsys.readouterr().err
    assert "2 evaluated, 0 failed" in capsys.readouterr().out
    with ResultStore(store) as opened:
        records = opened.results()
    assert sorted(record.task for record in records) == ["pairs", "pairs"]
    assert set(records[0].metric_mean) == {"accuracy", "macro_f1", "matthews", "score"}  # two classes: MCC too
    assert (model_dir / "evaluations" / "ckpt-200" / "pairs" / "result.json").is_file()
    assert _cli(arguments) == 0 and capsys.readouterr().out.count("done") == 2  # listed under its name


def test_layer_drop_study_on_the_users_task_refuses_changed_files(tiny_encoder_dir, tmp_path, capsys):
    out = tmp_path / "study"
    arguments = ["study", "layer-drop", "--init", str(tiny_encoder_dir), "--task", "pairs", "--drop", "1",
                 "--strategies", "top,contribution", *_pair_files(tmp_path), "--out", str(out), *_sets()]
    assert _cli(arguments) == 0, capsys.readouterr().err
    assert json.loads((out / "layer_drop.json").read_text())["task"] == "pairs"
    assert json.loads((out / "runs" / "unpruned" / "result.json").read_text())["task"] == "pairs"
    signature = json.loads((out / "study.json").read_text())
    assert signature["task"] == "pairs" and signature["task_files"]["text_columns"] == ["first", "second"]
    with open(tmp_path / "dev.tsv", "a", encoding="utf-8") as handle:
        handle.write("a sky\ta sea\t1\n")
    assert _cli(arguments) == 2
    assert "holds a study with a different task_files.sha256.dev" in capsys.readouterr().err


def test_trims_study_fine_tunes_rows_on_the_users_task(tiny_encoder_dir, tmp_path, capsys):
    out = tmp_path / "trims"
    arguments = ["study", "trims", "--from", str(tiny_encoder_dir), "--config", "tiny", "--trims", "untrimmed",
                 "--tasks", "pairs", *_pair_files(tmp_path), "--out", str(out),
                 *_sets([*FAST_FINETUNE, "finetune.seeds=[1]"])]
    assert _cli(arguments) == 0, capsys.readouterr().err
    record = json.loads((out / "runs" / "untrimmed" / "pairs" / "result.json").read_text())
    assert record["task"] == "pairs" and "macro_f1" in record["metric_mean"]
    assert json.loads((out / "study.json").read_text())["task_files"]["pairs"]["label_column"] == "same"
    assert "pairs" in (out / "trims.md").read_text()
