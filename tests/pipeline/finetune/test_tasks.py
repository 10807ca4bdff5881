"""GLUE tasks: the TSV fixture folder, the TFDS path (mocked, offline), sentiment, submissions."""

import pathlib

import pytest

from configs.errors import TrimbertError
from pipeline.finetune import sources
from pipeline.finetune import tasks as task_registry

GLUE_DIR = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "glue"


def test_task_table():
    assert task_registry.GLUE_TASKS == ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
    assert task_registry.SENTIMENT_TASKS == (
        "sentiment-movies", "sentiment-amazon", "sentiment-nyt", "sentiment-tweets")
    stsb = task_registry.get_task("STS-B")
    assert stsb.name == "stsb" and stsb.is_regression and stsb.num_labels == 1 and stsb.is_pair
    assert task_registry.get_task("sst-2") is task_registry.get_task("SST2") is task_registry.TASKS["sst2"]
    assert task_registry.get_task("mnli").num_labels == 3
    assert not task_registry.get_task("cola").is_pair
    assert [task.name for task in task_registry.parse_task_list("cola, sentiment")] == [
        "cola", *task_registry.SENTIMENT_TASKS]
    with pytest.raises(TrimbertError, match="unknown task 'squad'"):
        task_registry.get_task("squad")


def test_cola_without_header():
    examples = sources.read_glue_folder(task_registry.get_task("cola"), "train", GLUE_DIR)
    assert len(examples) == 6
    assert examples[0] == task_registry.Example("The cat sat on the mat.", None, 1, 0)
    assert examples[1] == task_registry.Example("The cat sat the on mat.", None, 0, 1)
    test = sources.read_glue_folder(task_registry.get_task("cola"), "test", GLUE_DIR)
    assert test[1] == task_registry.Example("Bark dogs the at night.", None, None, 1)


def test_mrpc_pairs_with_byte_order_mark():
    examples = sources.load_examples("mrpc", "train", glue_dir=GLUE_DIR)
    assert len(examples) == 4
    assert examples[0] == task_registry.Example("The company said profits rose 10 percent.",
                                       "Profits climbed 10 percent, the company said.", 1, 0)
    assert [example.label for example in examples] == [1, 0, 1, 0]
    test = sources.load_examples("mrpc", "test", glue_dir=GLUE_DIR)
    assert test[1].text_b == "The river flooded the town." and test[1].label is None and test[1].idx == 1


def test_stsb_regression():
    examples = sources.load_examples("stsb", "validation", glue_dir=GLUE_DIR)
    assert [example.label for example in examples] == [5.0, 0.5, 4.4]
    assert isinstance(examples[0].label, float)
    assert examples[2].text_a == "Talks resume in Geneva."
    assert examples[2].text_b == "Negotiations restart in Geneva."


def test_mnli_matched_and_mismatched():
    task = task_registry.get_task("mnli")
    assert task.dev_splits == ("validation_matched", "validation_mismatched")
    train = sources.load_examples(task, "train", glue_dir=GLUE_DIR)
    assert [example.label for example in train] == [1, 0, 2]  # neutral, entailment, contradiction
    matched = sources.load_examples(task, "validation_matched", glue_dir=GLUE_DIR)
    mismatched = sources.load_examples(task, "validation_mismatched", glue_dir=GLUE_DIR)
    # dev files carry label1..label5 before gold_label: the gold label is what counts
    assert [example.label for example in matched] == [1, 2]
    assert [example.label for example in mismatched] == [2, 0, 1]
    assert mismatched[1] == task_registry.Example("The book is on the table.", "There is a book.", 0, 1)
    assert len(sources.load_examples(task, "test_mismatched", glue_dir=GLUE_DIR)) == 2


def test_rte_and_sst2_labels():
    assert [e.label for e in sources.load_examples("rte", "train", glue_dir=GLUE_DIR)] == [0, 1]
    assert [e.label for e in sources.load_examples("sst2", "validation", glue_dir=GLUE_DIR)] == [1, 0]


def test_malformed_rows_name_file_and_line(tmp_path):
    folder = tmp_path / "STS-B"
    folder.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    (folder / "dev.tsv").write_text(
        header + "0\tg\tf\t2012\t1\tn\tn\tA\tB\t4.0\n1\tg\tf\t2012\t2\tn\tn\tA only\n")
    with pytest.raises(TrimbertError, match=r"STS-B/dev.tsv line 3: expected at least 10 tab-separated"):
        sources.read_glue_folder(task_registry.get_task("stsb"), "validation", tmp_path)
    (folder / "dev.tsv").write_text(header + "0\tg\tf\t2012\t1\tn\tn\tA\tB\thigh\n")
    with pytest.raises(TrimbertError, match=r"dev.tsv line 2: label 'high' is not a number"):
        sources.read_glue_folder(task_registry.get_task("stsb"), "validation", tmp_path)
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(TrimbertError, match=r"line 2: label 'maybe' is not entailment or not_entailment"):
        sources.read_glue_folder(task_registry.get_task("rte"), "train", tmp_path)
    (tmp_path / "RTE" / "dev.tsv").write_text("idx\ts1\ts2\tlabel\n")
    with pytest.raises(TrimbertError, match=r"RTE/dev.tsv line 1: header has no column 'sentence1'"):
        sources.read_glue_folder(task_registry.get_task("rte"), "validation", tmp_path)
    with pytest.raises(TrimbertError, match=r"QNLI/train.tsv not found"):
        sources.read_glue_folder(task_registry.get_task("qnli"), "train", tmp_path)
    with pytest.raises(TrimbertError, match=r"MNLI has no split 'validation'"):
        sources.read_glue_folder(task_registry.get_task("mnli"), "validation", tmp_path)


def test_tfds_path_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        cola = sources.load_examples("cola", "validation")
        stsb = sources.load_examples("stsb", "train")
        mnli = sources.load_examples("mnli", "validation_mismatched")
    assert len(cola) == 4 and all(e.text_b is None and e.label in (0, 1) for e in cola)
    assert all(isinstance(e.text_a, str) for e in cola)
    assert [e.idx for e in cola] == sorted(e.idx for e in cola)
    assert len(stsb) == 4 and all(isinstance(e.label, float) and isinstance(e.text_b, str) for e in stsb)
    assert all(e.label in (0, 1, 2) and e.text_b is not None for e in mnli)


def test_tfds_unlabelled_test_split_gives_none_labels():
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def as_dataset(self, *args, **kwargs):
        rows = [{"sentence1": "a b", "sentence2": "c d", "label": -1, "idx": 1},
                {"sentence1": "e f", "sentence2": "g h", "label": -1, "idx": 0}]
        return tf.data.Dataset.from_generator(
            lambda: iter(rows), output_signature={
                "sentence1": tf.TensorSpec((), tf.string), "sentence2": tf.TensorSpec((), tf.string),
                "label": tf.TensorSpec((), tf.int64), "idx": tf.TensorSpec((), np.int32)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        examples = sources.load_examples("rte", "test")
    assert examples == [task_registry.Example("e f", "g h", None, 0), task_registry.Example("a b", "c d", None, 1)]


def test_sentiment_tasks_use_the_same_example_type(tmp_path):
    folder = tmp_path / "sentiment-movies"
    folder.mkdir()
    (folder / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    examples = sources.load_examples("sentiment-movies", "validation", sentiment_dir=tmp_path)
    assert examples == [task_registry.Example("a fine film", None, 1, 0),
                        task_registry.Example("a dull film", None, 0, 1)]


def test_sentiment_from_the_embedded_asset(sentiment_dir):
    examples = sources.load_examples("sentiment-nyt", "test", sentiment_dir=sentiment_dir)
    assert len(examples) > 100
    assert {e.label for e in examples} == {0, 1} and all(e.text_b is None for e in examples)


def test_submission_files(tmp_path):
    path = task_registry.write_submission(task_registry.get_task("rte"), "test", [0, 1, 2], [0, 1, 1], tmp_path)
    assert path.name == "RTE.tsv"
    assert path.read_text() == "index\tprediction\n0\tentailment\n1\tnot_entailment\n2\tnot_entailment\n"
    path = task_registry.write_submission(task_registry.get_task("stsb"), "test", [0, 1], [4.25, 0.5], tmp_path)
    assert path.read_text() == "index\tprediction\n0\t4.2500\n1\t0.5000\n"
    path = task_registry.write_submission(task_registry.get_task("cola"), "test", [5], [1], tmp_path)
    assert path.read_text() == "index\tprediction\n5\t1\n"
    mnli = task_registry.get_task("mnli")
    assert task_registry.write_submission(mnli, "test_matched", [0], [2], tmp_path).name == "MNLI-m.tsv"
    path = task_registry.write_submission(mnli, "test_mismatched", [0, 1], [1, 0], tmp_path)
    assert path.name == "MNLI-mm.tsv" and path.read_text() == "index\tprediction\n0\tneutral\n1\tentailment\n"
    expected_names = {"cola": "CoLA.tsv", "sst2": "SST-2.tsv", "mrpc": "MRPC.tsv", "stsb": "STS-B.tsv",
                      "qqp": "QQP.tsv", "qnli": "QNLI.tsv", "rte": "RTE.tsv", "wnli": "WNLI.tsv"}
    for name, filename in expected_names.items():
        assert task_registry.TASKS[name].submissions == {"test": filename}
    with pytest.raises(TrimbertError, match="outside 0..1"):
        task_registry.write_submission(task_registry.get_task("rte"), "test", [0], [2], tmp_path)
    with pytest.raises(TrimbertError, match="no submission for split 'validation'"):
        task_registry.write_submission(task_registry.get_task("rte"), "validation", [0], [1], tmp_path)
