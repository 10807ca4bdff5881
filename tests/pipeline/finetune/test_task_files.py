"""A user's own task: files of every format -> Examples, the recorded class order, metrics, every error
(naming file, line, label and count), and the --train/--dev/... flags resolving to the task."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from configs.errors import TrimbertError
from pipeline.finetune import sources, task_files
from pipeline.finetune.tasks import Example, TaskFiles


def _write(path, rows: list[dict]):
    """``rows`` as the file its suffix names (CSV, TSV, JSON Lines or Parquet); values written as given."""
    suffix = path.suffix
    columns = list(rows[0])
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({column: [row[column] for row in rows] for column in columns}), path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        import csv

        with open(path, "w", encoding="utf-8", newline="") as handle:
            if suffix == ".tsv":
                writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
            else:
                writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([[row[column] for column in columns] for row in rows])
    return str(path)


def _files(tmp_path, train, dev, test=None, suffix="csv", texts=("text",), regression=False, name="mine"):
    return TaskFiles(name, _write(tmp_path / f"train.{suffix}", train), _write(tmp_path / f"dev.{suffix}", dev),
                     test and _write(tmp_path / f"test.{suffix}", test), tuple(texts), "label", regression)


TRAIN = [{"text": "good film", "label": "pos"}, {"text": "so so", "label": "neutral"},
         {"text": "awful", "label": "neg"}, {"text": "great", "label": "pos"}]
DEV = [{"text": "fine", "label": "neutral"}, {"text": "bad", "label": "neg"}]


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_string_labels_in_every_format_become_sorted_classes(tmp_path, suffix):
    task = task_files.build_task(_files(tmp_path, TRAIN, DEV, test=DEV[:1], suffix=suffix))
    assert task.label_names == ("neg", "neutral", "pos")  # sorted as strings, from the training file
    assert task.num_labels == 3 and not task.is_pair and not task.is_regression
    assert sources.load_examples(task, "train") == [
        Example("good film", None, 2, 0), Example("so so", None, 1, 1), Example("awful", None, 0, 2),
        Example("great", None, 2, 3)]
    assert [example.label for example in sources.load_examples(task, "validation")] == [1, 0]
    assert [example.label for example in sources.load_examples(task, "test")] == [1]
    assert task.test_splits == ("test",) and task.metrics.metrics == ("accuracy", "macro_f1")
    assert task.metrics.score == ("macro_f1",)
    assert task_files.check(task) == {"train": 4, "validation": 2, "test": 1}


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_integer_labels_sort_as_numbers(tmp_path, suffix):
    train = [{"text": f"t{label}", "label": label} for label in (10, 2, -1, 2)]
    task = task_files.build_task(_files(tmp_path, train, [{"text": "d", "label": 10}], suffix=suffix))
    assert task.label_names == ("-1", "2", "10")  # numeric order, not "-1" < "10" < "2"
    assert [example.label for example in sources.load_examples(task, "train")] == [2, 1, 0, 1]
    assert [example.label for example in sources.load_examples(task, "validation")] == [2]


def test_mixed_labels_sort_as_strings_and_json_ints_meet_csv_strings(tmp_path):
    train = [{"text": "a", "label": 3}, {"text": "b", "label": "x"}, {"text": "c", "label": 10}]
    files = TaskFiles("mine", _write(tmp_path / "train.jsonl", train),
                      _write(tmp_path / "dev.csv", [{"text": "d", "label": "10"}]), None, ("text",), "label")
    task = task_files.build_task(files)
    assert task.label_names == ("10", "3", "x")
    assert [example.label for example in sources.load_examples(task, "validation")] == [0]  # "10" is class 10
    assert task.test_splits == ()


def test_two_classes_add_matthews_and_pairs_read_both_texts(tmp_path):
    train = [{"q": "is it", "a": "yes", "label": "1"}, {"q": "was it", "a": "no", "label": "0"}]
    files = TaskFiles("pairs", _write(tmp_path / "train.tsv", train), _write(tmp_path / "dev.tsv", train), None,
                      ("q", "a"), "label")
    task = task_files.build_task(files)
    assert task.is_pair and task.label_names == ("0", "1")
    assert task.metrics.metrics == ("accuracy", "macro_f1", "matthews") and task.metrics.score == ("macro_f1",)
    assert sources.load_examples(task, "train")[1] == Example("was it", "no", 0, 1)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_regression_labels_are_scores(tmp_path, suffix):
    train = [{"text": "a", "label": 0.5}, {"text": "b", "label": 4.0}, {"text": "c", "label": 2}]
    if suffix == "parquet":
        train[2]["label"] = 2.0  # one Arrow type per column
    task = task_files.build_task(_files(tmp_path, train, train[:2], suffix=suffix, regression=True))
    assert task.is_regression and task.label_names == () and task.num_labels == 1
    assert [example.label for example in sources.load_examples(task, "train")] == [0.5, 4.0, 2.0]
    assert task.metrics.metrics == ("pearson", "spearman") and task.metrics.score == ("pearson", "spearman")


# --- errors --------------------------------------------------------------------------


def _error(call) -> str:
    with pytest.raises(TrimbertError) as caught:
        call()
    return str(caught.value)


def test_unseen_dev_and_test_labels_name_the_label_count_and_file(tmp_path):
    dev = [*DEV, {"text": "x", "label": "mixed"}, {"text": "y", "label": "mixed"}, {"text": "z", "label": "other"}]
    task = task_files.build_task(_files(tmp_path, TRAIN, dev))
    message = _error(lambda: sources.load_examples(task, "validation"))
    dev_file, train_file = tmp_path / "dev.csv", tmp_path / "train.csv"
    assert message == (f"{dev_file}: label 'mixed' in 2 row(s) (first: {dev_file} line 4); label 'other' in 1 "
                       f"row(s) (first: {dev_file} line 6) never occurs in the training file {train_file} "
                       f"(classes: neg, neutral, pos)")
    test_only = task_files.build_task(_files(tmp_path, TRAIN, DEV, test=[{"text": "w", "label": "NEG"}]))
    assert _error(lambda: task_files.check(test_only)).startswith(  # check reads the test file too
        f"{tmp_path / 'test.csv'}: label 'NEG' in 1 row(s) (first: {tmp_path / 'test.csv'} line 2) never occurs")


def test_blank_labels_and_texts_name_their_line(tmp_path):
    blank_label = [*TRAIN[:2], {"text": "x", "label": " "}]
    message = _error(lambda: task_files.build_task(_files(tmp_path, blank_label, DEV)))
    assert message == f"{tmp_path / 'train.csv'} line 4: blank label in column 'label'"
    null_label = [{"text": "a", "label": "p"}, {"text": "b", "label": None}]
    message = _error(lambda: task_files.build_task(_files(tmp_path, null_label, DEV, suffix="jsonl")))
    assert message == f"{tmp_path / 'train.jsonl'} line 2: blank label in column 'label'"
    task = task_files.build_task(_files(tmp_path, TRAIN, [*DEV, {"text": "", "label": "pos"}]))
    assert _error(lambda: sources.load_examples(task, "validation")) == (
        f"{tmp_path / 'dev.csv'} line 4: blank text in column 'text'")
    # A pair's second text must not be blank either.
    pairs = [{"q": "a", "a": "b", "label": "x"}, {"q": "c", "a": None, "label": "y"}]
    files = TaskFiles("pairs", _write(tmp_path / "p.parquet", pairs), _write(tmp_path / "p.parquet", pairs), None,
                      ("q", "a"), "label")
    assert _error(lambda: sources.load_examples(task_files.build_task(files), "train")) == (
        f"{tmp_path / 'p.parquet'} row 2: blank text in column 'a'")


def test_regression_rejects_a_non_number_naming_its_line(tmp_path):
    train = [{"text": "a", "label": "0.5"}, {"text": "b", "label": "high"}]
    task = task_files.build_task(_files(tmp_path, train, train, regression=True))
    assert _error(lambda: sources.load_examples(task, "train")) == (
        f"{tmp_path / 'train.csv'} line 3: label 'high' in column 'label' is not a number "
        f"(--regression needs numeric scores)")
    nan = [{"text": "a", "label": "nan"}]
    task = task_files.build_task(_files(tmp_path, nan, nan, regression=True))
    assert "line 2: label 'nan' in column 'label' is not a finite number" in _error(
        lambda: sources.load_examples(task, "train"))


def test_class_labels_that_are_fractions_or_a_single_class_are_refused(tmp_path):
    fractions = [{"text": "a", "label": 0.5}, {"text": "b", "label": 1}]
    assert _error(lambda: task_files.build_task(_files(tmp_path, fractions, DEV, suffix="jsonl"))) == (
        f"{tmp_path / 'train.jsonl'} line 1: label 0.5 in column 'label' is a fraction, not a class "
        f"(for scores: --regression)")
    one_class = [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]
    assert "holds one class only (x)" in _error(lambda: task_files.build_task(_files(tmp_path, one_class, DEV)))


def test_empty_files_and_files_without_rows_are_named(tmp_path):
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "header.csv").write_text("text,label\n\n", encoding="utf-8")
    good = _write(tmp_path / "good.csv", TRAIN)
    for bad, message in ((tmp_path / "empty.csv", "is empty"), (tmp_path / "header.csv", "holds no rows")):
        files = TaskFiles("mine", str(bad), good, None, ("text",), "label")
        assert _error(lambda files=files: task_files.build_task(files)) == f"{bad} {message}"
        task = task_files.build_task(TaskFiles("mine", good, str(bad), None, ("text",), "label"))
        assert _error(lambda task=task: task_files.check(task)) == f"{bad} {message}"


def test_a_missing_column_names_the_file_and_its_columns(tmp_path):
    task = task_files.build_task(TaskFiles("mine", _write(tmp_path / "train.csv", TRAIN),
                                           _write(tmp_path / "dev.csv", DEV), None, ("sentence",), "label"))
    assert _error(lambda: sources.load_examples(task, "train")) == (
        f"{tmp_path / 'train.csv'} has no column 'sentence'; its columns: text, label")


def test_descriptions_that_cannot_work_are_refused():
    with pytest.raises(TrimbertError, match="give one or two text columns .* got 3: a, b, c"):
        TaskFiles("mine", "t.csv", "d.csv", None, ("a", "b", "c"), "label")
    with pytest.raises(TrimbertError, match="column 'a' is both a text and the label"):
        TaskFiles("mine", "t.csv", "d.csv", None, ("a",), "a")
    with pytest.raises(TrimbertError, match="task name 'my task'"):
        TaskFiles("my task", "t.csv", "d.csv", None, ("a",), "label")


# --- the flags ---------------------------------------------------------------------------


def _args(**values) -> argparse.Namespace:
    from pipeline.cli import arguments

    parser = argparse.ArgumentParser()
    arguments.add_config_arguments(parser)
    argv = []
    for flag, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            argv += [f"--{flag.replace('_', '-')}"] + ([] if item is True else [str(item)])
    return parser.parse_args(argv)


@pytest.fixture
def own_files(tmp_path):
    return {"train": _write(tmp_path / "train.csv", TRAIN), "dev": _write(tmp_path / "dev.csv", DEV),
            "text_column": "text", "label_column": "label"}


def test_a_new_name_with_train_is_the_users_task_beside_built_in_ones(own_files, tmp_path):
    from pipeline.cli.arguments import resolve_tasks

    tasks = resolve_tasks(_args(**own_files), "rte, mine, sentiment", "--tasks")
    assert [task.name for task in tasks] == ["rte", "mine", "sentiment-movies", "sentiment-amazon", "sentiment-nyt",
                                             "sentiment-tweets"]
    assert tasks[1].user_files.train == own_files["train"] and tasks[1].label_names == ("neg", "neutral", "pos")
    scores = _write(tmp_path / "scores.jsonl", [{"text": "a", "label": 0.5}, {"text": "b", "label": 2}])
    (single,) = resolve_tasks(_args(**{**own_files, "train": scores, "dev": scores}, regression=True), "mine",
                              "--task")
    assert single.is_regression and single.user_files == TaskFiles("mine", scores, scores, None, ("text",), "label",
                                                                    regression=True)


def test_flag_errors_are_clear(own_files, tmp_path):
    from pipeline.cli.arguments import resolve_tasks

    def error(text, flag="--tasks", **values):
        return _error(lambda: resolve_tasks(_args(**values), text, flag))

    assert error("mine") == ("unknown task 'mine'; known: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, "
                             "sentiment-movies, sentiment-amazon, sentiment-nyt, sentiment-tweets; for your own "
                             "task give a new name with --train FILE --dev FILE --text-column NAME "
                             "--label-column NAME")
    assert error("rte,sst2", **own_files).startswith(
        "--train describes your own task, but --tasks rte,sst2 names only built-in tasks (rte, sst2)")
    assert "--task SST-2 names only built-in tasks" in error("SST-2", "--task", **own_files)  # a name collision
    assert error("mine,yours", **own_files).startswith("--tasks names 2 unknown tasks (mine, yours)")
    assert error("mine", train=own_files["train"], text_column="text") == (
        "--train needs --dev, --label-column too (your task 'mine')")
    assert error("mine", **{**own_files, "text_column": ["a", "b", "c"]}) == (
        "--text-column given 3 times (a, b, c); a task has one text or a pair of two")
    assert error("mine", dev=own_files["dev"], label_column="label") == (
        "--dev, --label-column describe(s) your own task: give --train FILE too")
    # The files are read when the flags are resolved, before anything runs.
    (tmp_path / "bad.csv").write_text("text,label\nx,\n", encoding="utf-8")
    assert error("mine", **{**own_files, "test": str(tmp_path / "bad.csv")}) == (
        f"{tmp_path / 'bad.csv'} line 2: blank label in column 'label'")


def test_a_study_signature_holds_the_users_files(own_files, tmp_path):
    """A changed file, or other columns, refuse a resume; a study without a user task resumes an older study.json."""
    from configs import schema as config_lib
    from pipeline.cli.arguments import resolve_tasks
    from pipeline.studies import bookkeeping, trim_specs, trims

    config = config_lib.load("tiny")
    tasks = resolve_tasks(_args(**own_files), "rte,mine", "--tasks")
    study = trims.TrimStudy(config=config, specs=(trim_specs.parse("untrimmed"),), tasks=tuple(tasks))
    out = str(tmp_path / "study")
    bookkeeping.check_study_folder(out, study.signature(), study.signature_defaults())
    bookkeeping.check_study_folder(out, study.signature(), study.signature_defaults())  # the same study resumes
    with open(own_files["dev"], "a", encoding="utf-8") as handle:
        handle.write("another,pos\n")
    changed = trims.TrimStudy(config=config, specs=study.specs, tasks=tuple(resolve_tasks(
        _args(**own_files), "rte,mine", "--tasks")))
    with pytest.raises(TrimbertError, match=re.escape("different task_files.mine.sha256.dev")):
        bookkeeping.check_study_folder(out, changed.signature(), study.signature_defaults())
    # A study.json written before user tasks existed (no task_files) resumes with built-in tasks only.
    built_in = trims.TrimStudy(config=config, specs=study.specs, tasks=("rte",))
    older = json.loads(json.dumps(built_in.signature()))
    del older["task_files"]
    (tmp_path / "older").mkdir()
    (tmp_path / "older" / bookkeeping.STUDY_FILENAME).write_text(json.dumps(older))
    bookkeeping.check_study_folder(str(tmp_path / "older"), built_in.signature(), built_in.signature_defaults())
    with pytest.raises(TrimbertError, match="different task_files, tasks;"):
        bookkeeping.check_study_folder(str(tmp_path / "older"), changed.signature(), built_in.signature_defaults())
