"""Scheduled evaluation: every checkpoint x task once, a second pass idle, failures recorded and retried."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil

import pytest

from pipeline.evaluation import scheduler as evaluate
from pipeline.evaluation.store import ResultStore

FIXTURE_GLUE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "glue"
TINY_OVERRIDES = ["model.num_layers=1", "model.hidden_dim=32", "model.intermediate_dim=64", "model.num_heads=2",
                  "finetune.seq_len=32", "finetune.batch_size=4", "finetune.epochs=1"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, vocab_path):
    """A pre-training model directory as ``trimbert pretrain`` lays it out, with two checkpoints.

    No ``encoder/`` export yet (pre-training still running): the vocabulary is found through the
    sha256 ``run.json`` records.
    """
    import tensorflow as tf

    import models
    from configs import schema as config_lib

    directory = tmp_path_factory.mktemp("pretrain") / "tiny-run"
    config = config_lib.load("tiny", TINY_OVERRIDES)
    tokens = pathlib.Path(vocab_path).read_text(encoding="utf-8").splitlines()
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "config.yaml").write_text(config_lib.dump(config))
    (directory / "run.json").write_text(json.dumps({
        "config": config.to_dict(), "next_sentence": False,
        "vocabulary_sha256": hashlib.sha256(("\n".join(tokens) + "\n").encode()).hexdigest()}))
    model = models.build_pretraining_model(models.build_encoder(config), next_sentence=False)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(directory / "checkpoints"),
                                         max_to_keep=3)
    for step in (100, 200):
        manager.save(checkpoint_number=step)
    return directory


def _evaluate(command: str, model_dir: pathlib.Path, tasks: str, glue_dir: pathlib.Path, store: pathlib.Path,
              *extra: str) -> int:
    from pipeline.cli import main as cli

    return cli.main([command, "--model-dir", str(model_dir), "--tasks", tasks, "--glue-dir", str(glue_dir),
                     "--store", str(store), *extra])


def test_lists_checkpoints_by_step(model_dir):
    assert [pathlib.Path(path).name for path in evaluate.list_checkpoints(model_dir)] == ["ckpt-100", "ckpt-200"]


def test_each_checkpoint_and_task_is_evaluated_once(model_dir, tmp_path, capsys):
    store_path = tmp_path / "store.sqlite"
    assert _evaluate("evaluate", model_dir, "mrpc,stsb", FIXTURE_GLUE, store_path, "--pending") == 0
    assert "4 evaluated, 0 failed" in capsys.readouterr().out
    with ResultStore(store_path) as store:
        rows = store.rows()
        records = store.results()
    assert [(pathlib.Path(row.checkpoint).name, row.task, row.status, row.attempts) for row in rows] == [
        ("ckpt-100", "mrpc", "done", 1), ("ckpt-100", "stsb", "done", 1),
        ("ckpt-200", "mrpc", "done", 1), ("ckpt-200", "stsb", "done", 1)]
    assert {record.model_config for record in records} == {"tiny"}
    assert (model_dir / "evaluations" / "ckpt-200" / "stsb" / "result.json").is_file()

    # A second pass (here from the watcher, twice) has nothing left to do.
    assert _evaluate("watch", model_dir, "mrpc,stsb", FIXTURE_GLUE, store_path, "--every", "0",
                     "--max-passes", "2") == 0
    assert capsys.readouterr().out.count("0 evaluated, 0 failed") == 2
    with ResultStore(store_path) as store:
        assert [row.attempts for row in store.rows()] == [1, 1, 1, 1]

    assert _evaluate("evaluate", model_dir, "mrpc,stsb", FIXTURE_GLUE, store_path) == 0  # no --pending: list
    assert capsys.readouterr().out.count("done") == 4


def test_a_failed_evaluation_is_recorded_and_retried(model_dir, tmp_path, capsys):
    glue_dir = tmp_path / "glue"
    shutil.copytree(FIXTURE_GLUE, glue_dir)
    shutil.rmtree(glue_dir / "RTE")  # RTE's data is missing: every RTE evaluation fails
    store_path = tmp_path / "store.sqlite"
    assert _evaluate("evaluate", model_dir, "rte", glue_dir, store_path, "--pending") == 1
    assert "0 evaluated, 2 failed" in capsys.readouterr().out
    with ResultStore(store_path) as store:
        rows = store.rows()
    assert [row.status for row in rows] == ["failed", "failed"]
    assert all("RTE" in row.error and "not found" in row.error for row in rows)

    shutil.copytree(FIXTURE_GLUE / "RTE", glue_dir / "RTE")  # the data arrives: the next pass retries
    assert _evaluate("evaluate", model_dir, "rte", glue_dir, store_path, "--pending") == 0
    assert "2 evaluated, 0 failed" in capsys.readouterr().out
    with ResultStore(store_path) as store:
        assert [(row.status, row.attempts, row.error) for row in store.rows()] == [("done", 2, None)] * 2


def test_run_pass_takes_one_claim_at_a_time_and_keeps_going_after_a_failure(tmp_path):
    calls = []

    def flaky(checkpoint, task):
        calls.append((checkpoint, task))
        raise RuntimeError("boom")

    with ResultStore(tmp_path / "store.sqlite") as store:
        summary = evaluate.run_pass(store, ["a", "b"], ["t"], flaky, owner="test", log=lambda line: None)
        assert calls == [("a", "t"), ("b", "t")]  # each failed once, not retried within the pass
        assert [message for _, _, message in summary.failed] == ["RuntimeError: boom"] * 2


def test_finetune_resolves_a_model_dir_to_its_latest_checkpoint(model_dir, tmp_path):
    from pipeline.cli import main as cli
    from pipeline.finetune import run as finetune

    assert finetune.resolve_source(model_dir).kind == "model_dir"
    assert finetune.resolve_source(model_dir / "checkpoints" / "ckpt-100").kind == "checkpoint"
    out = tmp_path / "run"
    assert cli.main(["finetune", "--init", str(model_dir), "--task", "sst2", "--glue-dir", str(FIXTURE_GLUE),
                     "--out", str(out)]) == 0  # the run's config.yaml supplies the finetune section
    record = json.loads((out / "result.json").read_text())
    assert record["model_config"] == "tiny" and record["checkpoint"] == str(model_dir)


@pytest.mark.parametrize("command, exit_code", [(["evaluate", "--pending"], 2),
                                                (["watch", "--max-passes", "1", "--every", "0"], 0)])
def test_no_checkpoints_yet_is_said_a_one_off_fails_a_scheduled_pass_does_not(model_dir, tmp_path, command,
                                                                               exit_code):
    import subprocess
    import sys

    empty = tmp_path / "not-started"
    (empty / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "run.json"):
        shutil.copy(model_dir / name, empty / name)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *command, "--model-dir", str(empty), "--tasks", "mrpc",
         "--glue-dir", str(FIXTURE_GLUE), "--store", str(tmp_path / "store.sqlite")],
        cwd=pathlib.Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=120)
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert f"{empty / 'checkpoints'}: no checkpoints yet; nothing to evaluate" in result.stdout + result.stderr
