"""The layer-drop study on a tiny two-block model: a row per strategy, shared runs, the table files, resume."""

from __future__ import annotations

import csv
import json
import pathlib

import pytest

FIXTURE_GLUE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "glue"


@pytest.fixture(scope="module")
def two_block_model(tmp_path_factory, tiny_config, vocab_path):
    """The shared tiny encoder's shape with two blocks (a block to drop and one to keep), as a Hugging Face folder."""
    import dataclasses

    import models

    folder = tmp_path_factory.mktemp("study") / "two-blocks"
    config = dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, num_layers=2))
    models.save_pretrained(models.build_encoder(config), folder, vocabulary_path=vocab_path)
    return folder


def test_layer_drop_study_writes_a_row_per_strategy_and_resumes(two_block_model, tmp_path, capsys):
    from pipeline.cli import main as cli
    from pipeline.studies import layer_drop as study

    out = tmp_path / "study"
    arguments = ["study", "layer-drop", "--init", str(two_block_model), "--task", "rte", "--drop", "1",
                 "--glue-dir", str(FIXTURE_GLUE), "--out", str(out),
                 "--set", "finetune.seq_len=32", "--set", "finetune.batch_size=4", "--set", "finetune.epochs=1"]
    assert cli.main(arguments) == 0
    rows = list(csv.DictReader(open(out / "layer_drop.csv")))
    assert [row["strategy"] for row in rows] == ["unpruned", *study.STUDY_STRATEGIES]
    by_strategy = {row["strategy"]: row for row in rows}
    assert by_strategy["top"]["dropped"] == "1" and by_strategy["bottom"]["dropped"] == "0"
    # The paper's layer 1 (odd) is block 0, as bottom drops: one shared run; its layer 2 is top's block 1.
    assert by_strategy["alternate-odd"]["note"] == "same blocks as bottom"
    assert by_strategy["alternate-even"]["note"] == "same blocks as top"
    # Each row reports the record of the run that fine-tuned its blocks (a shared run's for the rest):
    # a row that took another run's numbers, or none, differs from the record its dropped blocks name.
    run_of = {"": "unpruned", "0": "bottom-1", "1": "top-1"}
    for row in rows:
        record = json.loads((out / "runs" / run_of[row["dropped"]] / "result.json").read_text())
        assert float(row["score_mean"]) == record["metric_mean"]["score"], row["strategy"]
        assert float(row["score_std"]) == record["metric_std"]["score"], row["strategy"]
        assert int(row["parameters"]) == record["parameters"], row["strategy"]
        assert float(row["latency_batch1_ms"]) == record["serving_latency_ms"]["1"], row["strategy"]
        assert float(row["latency_batch32_ms"]) == record["serving_latency_ms"]["32"], row["strategy"]
    # Two pruned models were fine-tuned (top and bottom), plus the unpruned one.
    assert sorted(path.name for path in (out / "runs").iterdir()) == ["bottom-1", "top-1", "unpruned"]
    assert int(by_strategy["top"]["parameters"]) < int(by_strategy["unpruned"]["parameters"])
    table = (out / "layer_drop.md").read_text()
    assert "Sajjad et al. 2022" in table and "K=1: best" in table
    assert json.loads((out / "layer_drop.json").read_text())["task"] == "rte"

    # Resume: as if killed while fine-tuning top-1, a rerun redoes only that run.
    (out / "runs" / "top-1" / "result.json").unlink()
    kept = {name: (out / "runs" / name / "result.json").stat().st_mtime_ns for name in ("unpruned", "bottom-1")}
    assert cli.main(arguments) == 0
    assert (out / "runs" / "top-1" / "result.json").is_file()
    assert kept == {name: (out / "runs" / name / "result.json").stat().st_mtime_ns for name in kept}
    rerun = {row["strategy"]: row for row in csv.DictReader(open(out / "layer_drop.csv"))}
    assert rerun["bottom"]["score_mean"] == by_strategy["bottom"]["score_mean"]
    # The same folder with another finetune section is refused, naming the field.
    assert cli.main([*arguments, "--set", "finetune.learning_rate=1e-3"]) == 2
    assert "finetune.learning_rate" in capsys.readouterr().err


def test_findings_compare_top_and_bottom_with_the_paper():
    from pipeline.studies.layer_drop import StudyRow, findings

    rows = [StudyRow("unpruned", 0, score_mean=0.9), StudyRow("top", 2, (4, 5), score_mean=0.88),
            StudyRow("bottom", 2, (0, 1), score_mean=0.80), StudyRow("symmetric", 2, (2, 3), score_mean=0.85)]
    assert findings(rows) == ["K=2: best top (88.0), worst bottom (80.0); top best: yes, bottom worst: yes"]


def test_an_empty_training_split_stops_the_study_before_any_table(two_block_model, tmp_path, capsys):
    import shutil

    from pipeline.cli import main as cli

    glue = pathlib.Path(shutil.copytree(FIXTURE_GLUE, tmp_path / "glue"))
    train = glue / "MRPC" / "train.tsv"
    train.write_text(train.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")  # header only
    code = cli.main(["study", "layer-drop", "--init", str(two_block_model), "--task", "mrpc", "--drop", "1",
                     "--glue-dir", str(glue), "--out", str(tmp_path / "out")])
    errors = capsys.readouterr().err
    assert code == 2, errors
    assert f"MRPC train: {train} holds no examples" in errors
    assert not (tmp_path / "out" / "layer_drop.md").exists()
