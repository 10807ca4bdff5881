"""Scheduled evaluation: every checkpoint x task once, a second pass idle, failures recorded and retried."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import pytest

from pipeline.evaluation import scheduler as evaluate
from pipeline.evaluation.store import ResultStore

FIXTURE_GLUE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "glue"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_dir):
    """A copy of the shared tiny model directory (checkpoints at steps 100 and 200, no export yet), which the
    evaluations below write into."""
    return pathlib.Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("pretrain") / "tiny-run"))


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

    def flaky(checkpoint, task, out, lost):
        calls.append((checkpoint, task))
        pathlib.Path(out).mkdir(parents=True)  # the scheduler passes paths as strings (URLs allowed)
        raise OSError("boom")

    with ResultStore(tmp_path / "store.sqlite") as store:
        summary = evaluate.run_pass(store, ["a", "b"], ["t"], flaky, owner="test", results_dir=tmp_path / "results",
                                    log=lambda line: None)
        assert calls == [("a", "t"), ("b", "t")]  # each failed once, not retried within the pass
        assert [message for _, _, message in summary.failed] == ["OSError: boom"] * 2
    assert not any((tmp_path / "results" / evaluate.CLAIMS_DIRNAME).iterdir())  # failed claims' folders removed


@pytest.mark.parametrize("error", [TypeError("unsupported operand"), AttributeError("no attribute 'shape'"),
                                   KeyError("label")])
def test_a_programming_error_fails_the_pair_and_then_the_pass_loudly(tmp_path, error):
    calls = []

    def buggy(checkpoint, task, out, lost):
        calls.append(checkpoint)
        raise error

    with ResultStore(tmp_path / "store.sqlite") as store:
        with pytest.raises(type(error)):
            evaluate.run_pass(store, ["a", "b"], ["t"], buggy, owner="test", results_dir=tmp_path / "results",
                              log=lambda line: None)
        rows = store.rows()
    assert calls == ["a"]  # the pass stopped at the bug instead of repeating it on every pair
    assert [(row.checkpoint, row.status, row.error) for row in rows] == [
        ("a", "failed", f"{type(error).__name__}: {error}")]


def test_a_set_lost_event_stops_fine_tuning_at_the_next_step_and_writes_no_result(model_dir, tmp_path):
    import threading

    from configs import schema as config_lib
    from pipeline.finetune import run as finetune

    config = config_lib.load(model_dir / "config.yaml")
    template = finetune.FinetuneOptions(init="", task="", out="", glue_dir=str(FIXTURE_GLUE))
    lost = threading.Event()
    lost.set()
    checkpoint = evaluate.list_checkpoints(model_dir)[0]
    with pytest.raises(finetune.Stopped, match=r"after step 1 of \d+"):
        evaluate.finetune_evaluator(config, model_dir, template)(checkpoint, "mrpc", tmp_path / "out", lost)
    assert not (tmp_path / "out" / "result.json").exists()


# ---------------------------------------------------------------------------
# Two watcher processes on one store
# ---------------------------------------------------------------------------

STEP_SECONDS = 0.05


class _PausableStore(ResultStore):
    """A store whose heartbeats, while ``pause_file`` exists, report success without renewing the lease.

    Stands in for a watcher that stalls (a swapped-out machine, a stopped container) while its
    evaluation thread keeps going.
    """

    def __init__(self, path: pathlib.Path, lease_seconds: float, pause_file: pathlib.Path | None):
        self.pause_file = pause_file
        super().__init__(path, lease_seconds=lease_seconds)

    def _heartbeat(self, connection, claim) -> bool:
        if self.pause_file is not None and self.pause_file.exists():
            return True
        return super()._heartbeat(connection, claim)


def _slow_evaluation(work_dir: pathlib.Path, steps: int):
    """A fake fine-tune: ``steps`` steps, each logged to ``work_dir/PAIR.steps``; a finished one to ``finished``."""
    import os
    import time

    from configs.errors import TrimbertError
    from pipeline.evaluation import record as result_record

    def run(checkpoint: str, task: str, out: str, lost) -> result_record.ResultRecord:
        out = pathlib.Path(out)
        out.mkdir(parents=True)
        pair = f"{pathlib.Path(checkpoint).name}-{task}"
        for step in range(steps):
            if lost.is_set():
                raise TrimbertError(f"stopped at step {step}")  # as fine-tuning's Stopped does
            time.sleep(STEP_SECONDS)
            with open(work_dir / f"{pair}.steps", "a") as handle:
                handle.write(f"{os.getpid()} {step} {time.time()}\n")
        (out / "worker").write_text(str(os.getpid()))
        with open(work_dir / "finished", "a") as handle:
            handle.write(f"{pair} {os.getpid()}\n")
        return result_record.make_record(checkpoint, "tiny", 1000, task,
                                         [result_record.SeedResult(1, {"accuracy": 0.5, "score": 0.5})],
                                         finetune_seconds=steps * STEP_SECONDS, devices=1,
                                         started_at=result_record.utc_now())

    return run


def _watcher(store_path, results_dir, work_dir, checkpoints, tasks, lease_seconds, steps, pause_file):
    """One watcher process: a pass of ``run_pass``; its summary goes to ``work_dir/summary-PID.json``."""
    import os

    with _PausableStore(store_path, lease_seconds, pause_file) as store:
        summary = evaluate.run_pass(store, checkpoints, tasks, _slow_evaluation(work_dir, steps),
                                    owner=f"watcher:{os.getpid()}", results_dir=results_dir, log=print)
    (work_dir / f"summary-{os.getpid()}.json").write_text(json.dumps(dataclasses.asdict(summary)))


def _start(context, *arguments):
    process = context.Process(target=_watcher, args=arguments)
    process.start()
    return process


def _join(*processes) -> None:
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0, f"watcher {process.pid} exited with {process.exitcode}"


def _wait_for(condition, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the other process"
        time.sleep(0.02)


def test_two_watcher_processes_do_each_pair_exactly_once(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fresh interpreters: no TensorFlow state forked
    checkpoints = [str(tmp_path / "run" / "checkpoints" / f"ckpt-{step}") for step in (100, 200, 300)]
    tasks, steps = ["rte", "mrpc"], 4
    arguments = (tmp_path / "store.sqlite", tmp_path / "results", tmp_path, checkpoints, tasks, 30.0, steps, None)
    first, second = _start(context, *arguments), _start(context, *arguments)
    _join(first, second)

    pairs = {f"{pathlib.Path(checkpoint).name}-{task}" for checkpoint in checkpoints for task in tasks}
    finished = [line.split() for line in (tmp_path / "finished").read_text().splitlines()]
    assert sorted(pair for pair, _ in finished) == sorted(pairs)  # each pair finished once, none twice
    for pair, pid in finished:  # and no step of it was run by anyone else
        assert [line.split()[:2] for line in (tmp_path / f"{pair}.steps").read_text().splitlines()] == [
            [pid, str(step)] for step in range(steps)]
        checkpoint, task = pair.rsplit("-", 1)
        assert (tmp_path / "results" / checkpoint / task / "worker").read_text() == pid  # the winner's folder
    assert not any((tmp_path / "results" / evaluate.CLAIMS_DIRNAME).iterdir())
    with ResultStore(tmp_path / "store.sqlite") as store:
        assert [(row.status, row.attempts) for row in store.rows()] == [("done", 1)] * len(pairs)


def test_a_watcher_whose_lease_is_taken_over_stops_and_its_work_is_discarded(tmp_path):
    import multiprocessing
    import time

    context = multiprocessing.get_context("spawn")
    checkpoint, lease = str(tmp_path / "run" / "checkpoints" / "ckpt-100"), 1.0
    steps_file, pause_file = tmp_path / "ckpt-100-rte.steps", tmp_path / "pause-heartbeats"
    pause_file.touch()  # the first watcher stalls: its lease is not renewed
    stalled = _start(context, tmp_path / "store.sqlite", tmp_path / "results", tmp_path, [checkpoint], ["rte"],
                     lease, 400, pause_file)  # 400 steps: 20 s of work if nothing stopped it
    _wait_for(steps_file.exists)
    time.sleep(lease + 0.5)  # the lease has expired
    taking_over = _start(context, tmp_path / "store.sqlite", tmp_path / "results", tmp_path, [checkpoint],
                         ["rte"], lease, 4, None)
    _wait_for(lambda: f"\n{taking_over.pid} " in "\n" + steps_file.read_text())
    pause_file.unlink()  # the stalled watcher's next heartbeat finds its claim gone
    resumed_at = time.time()
    _join(stalled, taking_over)

    steps = [line.split() for line in steps_file.read_text().splitlines()]
    stalled_steps = [float(moment) for pid, _, moment in steps if pid == str(stalled.pid)]
    # It stopped within a heartbeat interval (lease / 3) and a step of learning it lost, not after 400 steps.
    assert len(stalled_steps) < 400 and max(stalled_steps) < resumed_at + lease / 3 + 2.0
    assert [line.split() for line in (tmp_path / "finished").read_text().splitlines()] == [
        ["ckpt-100-rte", str(taking_over.pid)]]
    assert (tmp_path / "results" / "ckpt-100" / "rte" / "worker").read_text() == str(taking_over.pid)
    assert not any((tmp_path / "results" / evaluate.CLAIMS_DIRNAME).iterdir())  # the loser's folder is gone
    summaries = {pid: json.loads((tmp_path / f"summary-{pid}.json").read_text())
                 for pid in (stalled.pid, taking_over.pid)}
    assert summaries[stalled.pid] == {"completed": [], "failed": [], "lost": [[checkpoint, "rte"]]}
    assert summaries[taking_over.pid] == {"completed": [[checkpoint, "rte"]], "failed": [], "lost": []}
    with ResultStore(tmp_path / "store.sqlite") as store:
        [row] = store.rows()
    assert (row.status, row.attempts, row.owner) == ("done", 2, f"watcher:{taking_over.pid}")


def test_finetune_resolves_a_model_dir_to_its_latest_checkpoint(model_dir, tmp_path):
    from pipeline.cli import main as cli

    out = tmp_path / "run"
    assert cli.main(["finetune", "--init", str(model_dir), "--task", "sst2", "--glue-dir", str(FIXTURE_GLUE),
                     "--out", str(out)]) == 0  # the run's config.yaml supplies the finetune section
    record = json.loads((out / "result.json").read_text())
    assert record["model_config"] == "tiny" and record["checkpoint"] == str(model_dir)


@pytest.mark.parametrize("command, exit_code", [(["evaluate", "--pending"], 2),
                                                (["watch", "--max-passes", "1", "--every", "0"], 0)])
def test_no_checkpoints_yet_is_said_a_one_off_fails_a_scheduled_pass_does_not(model_dir, tmp_path, command,
                                                                               exit_code, capsys):
    from pipeline.cli import main as cli

    empty = tmp_path / "not-started"
    (empty / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "run.json"):
        shutil.copy(model_dir / name, empty / name)
    code = cli.main([*command, "--model-dir", str(empty), "--tasks", "mrpc", "--glue-dir", str(FIXTURE_GLUE),
                     "--store", str(tmp_path / "store.sqlite")])
    captured = capsys.readouterr()
    assert code == exit_code, captured.out + captured.err
    assert f"{empty / 'checkpoints'}: no checkpoints yet; nothing to evaluate" in captured.out + captured.err
