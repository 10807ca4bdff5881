"""Two-worker pre-training (two processes, TF_CONFIG) that is preempted, loses a peer, or never gets one.

- SIGTERM to one worker: every worker saves the same step and exits 143; a rerun resumes there and
  ends with the weights of an uninterrupted two-worker run.
- A worker SIGKILLed: the survivor stops within 30 s, exit 75, one line naming the lost task and the
  last checkpoint.
- A worker whose peer never starts: it stops within pretrain.stall_timeout_seconds, exit 75, naming
  the peer's address from TF_CONFIG.

The rules behind them run in this process: the exit codes, the start-up watchdog, the recognition
and wording of a lost peer.
"""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import subprocess
import time

import pytest

from configs.errors import TrimbertError
from pipeline.pretrain import distribution, peers
from pipeline.pretrain import watchdog as watchdog_lib

# Every checkpoint but the SIGTERM one is out of reach, so the resume can only start from that one.
NO_PERIODIC_CHECKPOINTS = {"pretrain.checkpoint_every": 1000}
WORKER_1 = "/job:worker/replica:0/task:1"


def _free_ports(count: int) -> list[int]:
    handles = [socket.socket() for _ in range(count)]
    try:
        for handle in handles:
            handle.bind(("127.0.0.1", 0))
        return [handle.getsockname()[1] for handle in handles]
    finally:
        for handle in handles:
            handle.close()


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


def _start_workers(pretrain_command, data, model_dir, steps, ports, indexes=(0, 1), **settings):
    processes = []
    for index in indexes:
        command, env = pretrain_command(data, model_dir, steps, "--strategy", "multi_worker",
                                        env={"TF_CONFIG": _tf_config(ports, index)}, **settings)
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    return processes


def _finish(processes, timeout=300) -> list[tuple[int, str, str]]:
    results = []
    try:
        for process in processes:
            output, errors = process.communicate(timeout=timeout)
            results.append((process.returncode, output, errors))
    finally:
        for process in processes:
            process.kill()  # a worker blocked in TensorFlow ignores SIGTERM
    return results


def _wait_for(path: pathlib.Path, processes, timeout=240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for process in processes:
            assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _digest(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("weights sha256")]
    return line.split()[-1]


# ---------------------------------------------------------------------------
# Processes (slow)
# ---------------------------------------------------------------------------


@pytest.mark.slow  # about 60 s: three two-worker runs
def test_sigterm_to_one_worker_checkpoints_every_worker_at_one_step_and_resumes_to_the_same_weights(
        packed_data, tmp_path, pretrain_command, read_metrics):
    steps = 40
    reference = _finish(_start_workers(pretrain_command, packed_data, tmp_path / "reference", steps,
                                       _free_ports(2), **NO_PERIODIC_CHECKPOINTS))
    assert [code for code, _, _ in reference] == [0, 0], reference
    expected = _digest(reference[0][1])

    model_dir = tmp_path / "preempted"
    workers = _start_workers(pretrain_command, packed_data, model_dir, steps, _free_ports(2),
                             **NO_PERIODIC_CHECKPOINTS)
    _wait_for(model_dir / "metrics.jsonl", workers)  # the chief has logged step 1
    workers[1].send_signal(signal.SIGTERM)  # only worker 1, as when its machine is preempted
    preempted = _finish(workers, timeout=120)
    assert [code for code, _, _ in preempted] == [143, 143], preempted
    saved = sorted(path.name for path in (model_dir / "checkpoints").glob("ckpt-*.index"))
    assert len(saved) == 1, saved
    step = int(saved[0].split("-")[1].split(".")[0])
    assert 1 <= step < steps
    # The non-chief saved the same step into its own folder.
    assert [path.name for path in (model_dir / ".worker-1" / "checkpoints").glob("ckpt-*.index")] == saved
    for _, output, _ in preempted:
        assert f"SIGTERM: checkpoint saved at step {step} by every worker" in output, output
        assert f"the signal reached task 1 ({WORKER_1})" in output, output

    resumed = _finish(_start_workers(pretrain_command, packed_data, model_dir, steps, _free_ports(2),
                                     **NO_PERIODIC_CHECKPOINTS))
    assert [code for code, _, _ in resumed] == [0, 0], resumed
    for _, output, _ in resumed:
        assert f"ckpt-{step} at step {step}" in output  # "resumed from .../ckpt-N at step N"
        assert _digest(output) == expected  # bit-identical to the uninterrupted run's weights
    assert [m["step"] for m in read_metrics(model_dir) if "loss" in m] == list(range(1, steps + 1))


@pytest.mark.slow  # about 30 s: two workers, then the heartbeat timeout
def test_a_killed_worker_stops_the_survivor_with_exit_75_naming_it_and_the_checkpoint(packed_data, tmp_path,
                                                                                      pretrain_command):
    model_dir = tmp_path / "run"
    workers = _start_workers(pretrain_command, packed_data, model_dir, 2000, _free_ports(2),
                             **{"pretrain.checkpoint_every": 2})
    _wait_for(model_dir / "checkpoints" / "ckpt-2.index", workers)
    workers[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    [(code, output, errors)] = _finish(workers[:1], timeout=90)
    workers[1].wait()
    assert time.monotonic() - killed < 30
    assert code == watchdog_lib.RESTART_EXIT_CODE == 75, output + errors
    assert "Traceback" not in output + errors
    [line] = [line for line in errors.splitlines() if "trimbert pretrain:" in line]
    assert f"lost {WORKER_1}" in line
    checkpoint = pathlib.Path(line.split("the last checkpoint is step ")[1].split(";")[0].split(", ")[1])
    step = int(line.split("the last checkpoint is step ")[1].split(",")[0])
    assert checkpoint == model_dir / "checkpoints" / f"ckpt-{step}" and step >= 2
    assert (model_dir / "checkpoints" / f"ckpt-{step}.index").exists()
    assert not (model_dir / "writer.lock").exists()  # the survivor released the model directory


@pytest.mark.slow  # about 30 s: the stall timeout plus start-up
def test_a_worker_whose_peer_never_starts_stops_within_the_stall_timeout_naming_it(packed_data, tmp_path,
                                                                                  pretrain_command):
    ports = _free_ports(2)
    started = time.monotonic()
    [chief] = _start_workers(pretrain_command, packed_data, tmp_path / "run", 10, ports, indexes=(0,),
                             **{"pretrain.stall_timeout_seconds": 20})
    try:
        output, errors = chief.communicate(timeout=120)
    finally:
        chief.kill()
    # TensorFlow's import and the data checks come first; 20 s after the strategy began to wait it stops.
    assert time.monotonic() - started < 20 + 25
    assert chief.returncode == watchdog_lib.RESTART_EXIT_CODE, output + errors
    assert "Traceback" not in output + errors
    [line] = [line for line in errors.splitlines() if "trimbert pretrain:" in line]
    assert f"task 1 at localhost:{ports[1]} ({WORKER_1}) did not answer within 20 s " \
           f"(pretrain.stall_timeout_seconds)" in line
    assert "no checkpoint yet" in line and "exit 75" in line


# ---------------------------------------------------------------------------
# The rules, in this process
# ---------------------------------------------------------------------------


def test_exit_codes_are_distinct_and_the_help_lists_them():
    from pipeline.cli import main as cli

    codes = [watchdog_lib.STALLED_EXIT_CODE, watchdog_lib.RESTART_EXIT_CODE, watchdog_lib.PREEMPTED_EXIT_CODE]
    assert codes == [2, 75, 143]
    parser = cli.build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    text = " ".join(subparsers.choices["pretrain"].format_help().split())
    assert "75 restartable: under several workers a peer was lost" in text
    assert "143 stopped by SIGTERM" in text and "2 a configuration or data error" in text


def test_a_start_up_stall_exits_with_its_code_naming_the_stage(monkeypatch):
    exits = []
    monkeypatch.setattr(watchdog_lib.Watchdog, "_exit", staticmethod(lambda code, message: exits.append(
        (code, message))))
    monkeypatch.setattr(watchdog_lib, "POLL_SECONDS", 0.05)
    with watchdog_lib.Watchdog(0, "the start-up", 0.3, 5.0, lambda: "no checkpoint yet in X",
                               startup_exit_code=watchdog_lib.RESTART_EXIT_CODE) as startup:
        startup.step_done(0, "the other workers to join the cluster: task 1 at h:1")
        deadline = time.monotonic() + 10
        while not exits and time.monotonic() < deadline:
            time.sleep(0.05)
    code, message = exits[0]
    assert code == 75
    assert message == ("trimbert pretrain: start-up made no progress in 0.3 s (pretrain.stall_timeout_seconds) "
                       "while waiting on the other workers to join the cluster: task 1 at h:1; no checkpoint yet "
                       "in X; exit 75: restart every worker once they can reach each other")


def test_an_unwatched_stage_never_stalls_and_stop_is_idempotent(monkeypatch):
    exits = []
    monkeypatch.setattr(watchdog_lib.Watchdog, "_exit", staticmethod(lambda code, message: exits.append(code)))
    monkeypatch.setattr(watchdog_lib, "POLL_SECONDS", 0.05)
    with watchdog_lib.Watchdog(0, "the start-up", 0.2, 5.0, lambda: "", startup_exit_code=2) as startup:
        startup.unwatched(0, "reading every shard")
        time.sleep(0.6)
        startup.stop()
        startup.stop()
    assert not exits


@pytest.fixture
def two_workers(monkeypatch, tmp_path):
    """TF_CONFIG of worker 0 in a two-worker cluster; a model directory whose last checkpoint is ckpt-8."""
    monkeypatch.setenv("TF_CONFIG", _tf_config([1111, 2222], 0))
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-8"\n')
    import tensorflow as tf

    tf.train.Checkpoint(step=tf.Variable(8, dtype=tf.int64)).write(str(checkpoints / "ckpt-8"))
    return tmp_path


def test_a_lost_peer_is_named_with_the_checkpoint_to_resume_from(two_workers):
    import tensorflow as tf

    error = tf.errors.UnavailableError(None, None, "Collective ops is aborted by: The following tasks are "
                                       f"unhealthy (stopped sending heartbeats):\n{WORKER_1}\nThe tasks have crashed.")
    with pytest.raises(peers.PeerLost) as raised:
        with peers.reported(str(two_workers), multi_worker=True):
            raise error
    assert str(raised.value) == (
        f"trimbert pretrain: lost {WORKER_1} (UnavailableError); the last checkpoint is step 8, "
        f"{two_workers / 'checkpoints' / 'ckpt-8'}; exit 75: restart every worker to resume from it")
    assert raised.value.__cause__ is error


def test_without_a_task_named_the_peers_from_tf_config_are_listed(two_workers):
    import tensorflow as tf

    line = peers.describe_loss(tf.errors.AbortedError(None, None, "Collective ops is aborted"), str(two_workers))
    assert f"lost a peer or a service it relies on (TensorFlow named no task; the peers: task 1 at localhost:2222 " \
           f"({WORKER_1}) (from TF_CONFIG)) (AbortedError)" in line


def test_other_errors_and_single_worker_runs_pass_through(two_workers):
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError):
        with peers.reported(str(two_workers), multi_worker=True):
            raise tf.errors.InvalidArgumentError(None, None, "shapes differ")
    with pytest.raises(tf.errors.UnavailableError):
        with peers.reported(str(two_workers), multi_worker=False):
            raise tf.errors.UnavailableError(None, None, f"{WORKER_1} unhealthy")


def test_the_cluster_is_read_from_tf_config(two_workers, monkeypatch):
    assert distribution.cluster_tasks() == [("/job:worker/replica:0/task:0", "localhost:1111"),
                                            (WORKER_1, "localhost:2222")]
    assert distribution.this_task() == "/job:worker/replica:0/task:0"
    assert distribution.runs_multi_worker("multi_worker") and distribution.runs_multi_worker("auto")
    assert not distribution.runs_multi_worker("auto", tpu_address="grpc://x")
    assert not distribution.runs_multi_worker("one_device")
    monkeypatch.delenv("TF_CONFIG")
    assert distribution.cluster_tasks() == [] and distribution.this_task() is None
    assert not distribution.runs_multi_worker("multi_worker")


def test_waiting_for_a_silent_peer_ends_in_time_naming_it(monkeypatch, tmp_path):
    ports = _free_ports(2)
    monkeypatch.setenv("TF_CONFIG", _tf_config(ports, 0))
    started = time.monotonic()
    with pytest.raises(peers.PeerLost) as raised:
        peers.wait_for_peers(1.0, str(tmp_path), poll_seconds=0.1)
    assert 1.0 <= time.monotonic() - started < 5
    assert str(raised.value) == (
        f"trimbert pretrain: task 1 at localhost:{ports[1]} ({WORKER_1}) did not answer within 1 s "
        f"(pretrain.stall_timeout_seconds), the peers from TF_CONFIG this worker waited for; no checkpoint yet in "
        f"{tmp_path / 'checkpoints'}; exit 75: restart every worker once they can reach each other")


def test_peers_that_listen_are_waited_for_and_this_task_listens_meanwhile(monkeypatch, tmp_path):
    """Worker 1 listens on its port (as its own wait does); worker 0's wait returns and frees its port."""
    ports = _free_ports(2)
    monkeypatch.setenv("TF_CONFIG", _tf_config(ports, 0))
    with socket.create_server(("", ports[1])):
        peers.wait_for_peers(5.0, str(tmp_path), poll_seconds=0.1)
    with socket.create_server(("", ports[0])):  # worker 0's port is free again for its gRPC server
        pass
    monkeypatch.setenv("TF_CONFIG", _tf_config(ports, 1))
    with socket.create_server(("", ports[1])), pytest.raises(TrimbertError, match=f"its port {ports[1]}"):
        peers.wait_for_peers(5.0, str(tmp_path))  # this task's own port is taken by another process


def test_a_sigterm_during_the_start_up_reaches_the_first_loop_once():
    """After the strategy exists TensorFlow's own handler would swallow SIGTERM; remember_sigterm keeps it
    for the first phase's stop (the first step's agreement then checkpoints every worker)."""
    import os

    import tensorflow as tf

    from pipeline.pretrain import preemption

    previous = signal.getsignal(signal.SIGTERM)
    try:
        preemption.remember_sigterm()
        os.kill(os.getpid(), signal.SIGTERM)
        with preemption.SigtermStop(tf.distribute.get_strategy()) as first:
            assert first.raised and first.agree()
        with preemption.SigtermStop(tf.distribute.get_strategy()) as second:
            assert not second.raised
    finally:
        signal.signal(signal.SIGTERM, previous)
