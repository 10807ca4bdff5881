"""The trade-off report on hand-made result records: table rows, averages, CSV/JSON, PNG plots."""

import argparse
import csv
import json

import pytest

from configs.errors import TrimbertError
from pipeline.cli import report as report_command
from pipeline.evaluation import record as result_record
from pipeline.evaluation.store import ResultStore
from pipeline.report import tables as report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _record(checkpoint, config, parameters, task, dev_metrics, finished_at="2026-01-02T00:00:00+00:00",
            latency=None):
    """dev_metrics: one dict per seed (score computed here as the task's mean of metrics)."""
    seed_results = [result_record.SeedResult(seed, {**values, "score": sum(values.values()) / len(values)})
                    for seed, values in enumerate(dev_metrics, start=1)]
    return result_record.make_record(checkpoint, config, parameters, task, seed_results, finetune_seconds=1800.0,
                               devices=2, started_at="2026-01-01T00:00:00+00:00", finished_at=finished_at,
                               serving_latency_ms=None if latency is None else {1: latency, 32: latency / 4})


@pytest.fixture()
def sources(tmp_path):
    """Model A as result.json files in a folder (with a pre-training summary); model B in a store."""
    pretrain_run = tmp_path / "tiny_run"
    (pretrain_run / "checkpoints").mkdir(parents=True)
    (pretrain_run / "summary.json").write_text(json.dumps({"accelerator_hours": 2.0}))
    checkpoint_a = str(pretrain_run / "checkpoints" / "ckpt-1000")
    model_a = [
        _record(checkpoint_a, "tiny", 4_400_000, "cola", [{"matthews": 0.2}, {"matthews": 0.4}], latency=2.0),
        _record(checkpoint_a, "tiny", 4_400_000, "mrpc", [{"f1": 0.8, "accuracy": 0.7}], latency=4.0),
        _record(checkpoint_a, "tiny", 4_400_000, "stsb", [{"pearson": 0.8, "spearman": 0.6}]),
        _record(checkpoint_a, "tiny", 4_400_000, "sentiment-movies", [{"accuracy": 0.8}, {"accuracy": 0.9}]),
        # an older evaluation of the same pair: the newer one above wins
        _record(checkpoint_a, "tiny", 4_400_000, "cola", [{"matthews": 0.9}], finished_at="2025-01-01"),
    ]
    folder = tmp_path / "finetune_runs"
    for number, record in enumerate(model_a):
        record.save(folder / f"run-{number}" / result_record.RESULT_FILENAME)
    # a claim's work in progress (hidden folder) is not a result, though it is the newest record of its pair
    _record(checkpoint_a, "tiny", 4_400_000, "cola", [{"matthews": 0.0}], finished_at="2027-01-01").save(
        folder / ".claims" / "token" / result_record.RESULT_FILENAME)
    database = tmp_path / "results.sqlite"
    with ResultStore(database) as store:
        for task, metrics in [("cola", {"matthews": 0.5}), ("mrpc", {"f1": 0.9, "accuracy": 0.8}),
                              ("sentiment-movies", {"accuracy": 0.9})]:
            (claim,) = store.claim_pending(["hf/minilm"], [task], owner="test")
            store.complete(claim, _record("hf/minilm", "minilm_l6", 22_700_000, task, [metrics]))
    return folder, database


def test_rows_and_averages(sources):
    rows = report.build_rows(report.read_records(list(sources)))
    tiny, minilm = rows
    assert tiny.label == "tiny" and minilm.label == "minilm_l6"
    assert list(tiny.records) == ["cola", "mrpc", "stsb", "sentiment-movies"]
    assert tiny.records["cola"].score == pytest.approx(0.3)  # (0.2 + 0.4)/2, not the older 0.9
    # GLUE average of task scores: CoLA 0.3, MRPC (0.8+0.7)/2 = 0.75, STS-B (0.8+0.6)/2 = 0.7
    assert tiny.glue_average == pytest.approx((0.3 + 0.75 + 0.7) / 3)
    assert tiny.sentiment_average == pytest.approx(0.85)
    assert minilm.glue_average == pytest.approx((0.5 + 0.85) / 2)  # only the GLUE tasks it has
    assert tiny.pretrain_accelerator_hours == 2.0 and minilm.pretrain_accelerator_hours is None
    # 1800 s on 2 devices = 1 accelerator-hour per task
    assert tiny.finetune_accelerator_hours == pytest.approx(4.0)
    assert tiny.total_accelerator_hours == pytest.approx(6.0)
    assert tiny.latency_batch1_ms == pytest.approx(3.0)  # mean of the two measured
    assert tiny.latency_batch32_ms == pytest.approx(0.75)


def test_report_command_writes_tables_and_plots(sources, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    out = tmp_path / "report"
    assert report_command.run(parser.parse_args([*map(str, sources), "--out", str(out)])) == 0
    assert "report.md" in capsys.readouterr().out

    markdown = (out / "report.md").read_text()
    assert ("| Model | Params | CoLA | MRPC | STS-B | sentiment-movies | GLUE avg | GLUE tasks "
            "| Sentiment avg | Pre-train acc-h | Fine-tune acc-h | ms/ex b1 | ms/ex b32 |") in markdown
    # One or two seeds: the count, not a std (over one seed it would read "± 0.0").
    assert ("| tiny | 4.4M | 30.0 (2 seeds) | 75.0 (1 seed) | 70.0 (1 seed) | 85.0 (2 seeds) | 58.3 | 3 | 85.0 "
            "| 2 | 4 | 3 |") in markdown
    assert ("| minilm_l6 | 22.7M | 50.0 (1 seed) | 85.0 (1 seed) | – | 90.0 (1 seed) | 67.5 | 2 | 90.0 "
            "| – | 3 | – |") in markdown
    assert "| tiny | MRPC | f1 80.0 (1 seed), accuracy 70.0 (1 seed) | 1 | 1 | – |" in markdown
    assert "± 0.0" not in markdown

    with open(out / "report.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["model"] for line in lines] == ["tiny", "minilm_l6"]
    assert float(lines[0]["glue_average"]) == pytest.approx(1.75 / 3)
    assert float(lines[0]["cola.matthews_std"]) == pytest.approx(0.02**0.5)
    assert lines[1]["stsb.pearson_mean"] == "" and lines[1]["pretrain_accelerator_hours"] == ""

    data = json.loads((out / "report.json").read_text())
    assert data["rows"][1]["glue_tasks"] == ["cola", "mrpc"]
    assert data["rows"][0]["tasks"]["cola"]["seeds"] == [1, 2]
    assert data["rows"][0]["tasks"]["cola"]["best_seed"] == 2

    for name in report.PLOT_FILES.values():
        png = (out / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(TrimbertError, match="no such file or folder"):
        report.read_records([tmp_path / "absent.json"])
    with pytest.raises(TrimbertError, match="no \\*result.json files"):
        report.read_records([tmp_path])
    with pytest.raises(TrimbertError, match="no result records"):
        report.write_report([], tmp_path / "out")


def test_a_users_task_renders_with_its_metrics_outside_the_averages(tmp_path):
    from pipeline.finetune import task_files
    from pipeline.finetune.tasks import TaskFiles

    for name in ("train", "dev"):
        (tmp_path / f"{name}.csv").write_text("text,label\na,x\nb,y\nc,z\n", encoding="utf-8")
    task = task_files.build_task(TaskFiles("colours", str(tmp_path / "train.csv"), str(tmp_path / "dev.csv"), None,
                                           ("text",), "label"))
    checkpoint = str(tmp_path / "ckpt-1")
    own = result_record.make_record(
        checkpoint, "tiny", 4_400_000, task,
        [result_record.SeedResult(1, {"accuracy": 0.6, "macro_f1": 0.5, "score": 0.5},
                                  {"accuracy": 0.7, "macro_f1": 0.4, "score": 0.4})],
        finetune_seconds=1800.0, devices=2, started_at="2026-01-01T00:00:00+00:00")
    assert own.task == "colours"
    records = [own, _record(checkpoint, "tiny", 4_400_000, "cola", [{"matthews": 0.2}]),
               _record(checkpoint, "tiny", 4_400_000, "sentiment-movies", [{"accuracy": 0.8}])]
    (row,) = report.build_rows(records)
    assert list(row.records) == ["cola", "sentiment-movies", "colours"]  # a user's task last
    assert row.glue_average == pytest.approx(0.2) and row.glue_tasks == ["cola"]
    assert row.sentiment_average == pytest.approx(0.8)
    report.write_report(records, tmp_path / "out")
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| Model | Params | CoLA | sentiment-movies | colours | GLUE avg |" in markdown
    assert "| tiny | 4.4M | 20.0 (1 seed) | 80.0 (1 seed) | 50.0 (1 seed) | 20.0 | 1 | 80.0 |" in markdown
    assert ("| tiny | colours | accuracy 60.0 (1 seed), macro_f1 50.0 (1 seed) | 1 | 1 "
            "| accuracy 70.0, macro_f1 40.0 |") in markdown
    with open(tmp_path / "out" / "report.csv", newline="") as handle:
        (line,) = list(csv.DictReader(handle))
    assert float(line["colours.macro_f1_mean"]) == pytest.approx(0.5)
    assert float(line["glue_average"]) == pytest.approx(0.2)
