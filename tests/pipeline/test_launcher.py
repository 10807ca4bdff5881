"""``pipeline.launcher`` with fake workers (small Python scripts) and ``trimbert launch``'s arguments.

Each fake worker reads its index from TF_CONFIG, records its start (TF_CONFIG and pid) and any SIGTERM
in a folder, prints a line to stdout and one to stderr, then does what its plan says for that start:
exit with a code, ``sleep`` (until SIGTERM, which it answers with 143), ``ignore`` SIGTERM, or ``kill``
itself with SIGKILL. The real pre-training workers: tests/pipeline/pretrain/test_launch.py (slow).
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time

import pytest

from pipeline.launcher import Supervisor, tf_config

FAKE_WORKER = """\
import json, os, pathlib, signal, sys, time
config = json.loads(os.environ["TF_CONFIG"])
index, workers = config["task"]["index"], len(config["cluster"]["worker"])
folder, plan = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2])[str(index)]
start = len(list(folder.glob(f"start-{index}-*")))
action = plan[min(start, len(plan) - 1)]
def stopped(signum, frame):
    (folder / f"sigterm-{index}-{start}").write_text("")
    sys.exit(143)
signal.signal(signal.SIGTERM, signal.SIG_IGN if action == "ignore" else stopped)
(folder / f"start-{index}-{start}").write_text(json.dumps({"tf_config": os.environ["TF_CONFIG"], "pid": os.getpid()}))
print(f"out from {index}", flush=True)
sys.stderr.write(f"err from {index} (no newline)")
sys.stderr.flush()
# Whatever it does, a worker first waits until every worker of its group is up, with its SIGTERM handler.
deadline = time.monotonic() + 20
while not all((folder / f"start-{peer}-{start}").exists() for peer in range(workers)) and time.monotonic() < deadline:
    time.sleep(0.01)
if action == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if action in ("sleep", "ignore"):
    time.sleep(60)
sys.exit(action if isinstance(action, int) else 0)
"""


def _supervise(tmp_path, plan: dict[int, list], workers: int = 2, **options):
    """Runs the fake workers under a Supervisor: (exit code, stdout, stderr, seconds)."""
    script = tmp_path / "worker.py"
    script.write_text(FAKE_WORKER)
    out, err = io.StringIO(), io.StringIO()
    command = [sys.executable, str(script), str(tmp_path), json.dumps({str(k): v for k, v in plan.items()})]
    started = time.monotonic()
    code = Supervisor(command, workers, out=out, err=err, poll_seconds=0.02, **options).run()
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


def _starts(tmp_path, index: int) -> list[dict]:
    """Worker ``index``'s starts, in order: their TF_CONFIG (parsed) and pid."""
    count = len(list(tmp_path.glob(f"start-{index}-*")))
    records = [json.loads((tmp_path / f"start-{index}-{start}").read_text()) for start in range(count)]
    return [{"tf_config": json.loads(record["tf_config"]), "pid": record["pid"]} for record in records]


def _launch_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("launch: ")]


def test_a_failed_worker_stops_the_others_and_all_restart_until_none_is_left(tmp_path):
    code, _, err, _ = _supervise(tmp_path, {0: ["sleep"], 1: [1]}, max_restarts=2)
    assert code == 1  # the failing worker's code
    assert len(_starts(tmp_path, 0)) == len(_starts(tmp_path, 1)) == 3  # the first start and two restarts
    assert sorted(path.name for path in tmp_path.glob("sigterm-*")) == ["sigterm-0-0", "sigterm-0-1", "sigterm-0-2"]
    restarts = [line for line in _launch_lines(err) if "restarting" in line]
    assert restarts == [f"launch: worker 1 exited with code 1; restarting all 2 workers from the last checkpoint "
                        f"(restart {n} of 2)" for n in (1, 2)]
    assert _launch_lines(err)[-1] == "launch: worker 1 exited with code 1; no restart left (2 of 2 used)"


def test_a_restarted_group_that_finishes_ends_0_with_fresh_ports_and_every_address_in_each_tf_config(tmp_path):
    code, _, err, _ = _supervise(tmp_path, {0: ["sleep", 0], 1: [75, 0], 2: ["sleep", 0]}, workers=3,
                                 max_restarts=5)
    assert code == 0
    assert sum("restarting" in line for line in _launch_lines(err)) == 1
    assert "launch: worker 1 exited with code 75; restarting all 3 workers" in err
    starts = [_starts(tmp_path, index) for index in range(3)]
    assert [len(s) for s in starts] == [2, 2, 2]
    for start in range(2):
        configs = [starts[index][start]["tf_config"] for index in range(3)]
        assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
        addresses = configs[0]["cluster"]["worker"]
        assert all(c["cluster"] == {"worker": addresses} for c in configs)
        assert len(set(addresses)) == 3 and all(a.startswith("localhost:") for a in addresses)
        # The launch line names each worker's pid and address.
        started = [line for line in _launch_lines(err) if line.startswith("launch: started")][start]
        for index in range(3):
            assert f"worker {index} (pid {starts[index][start]['pid']}) at {addresses[index]}" in started
    first, second = (starts[0][s]["tf_config"]["cluster"]["worker"] for s in range(2))
    assert set(first).isdisjoint(second)  # new ports for the new group


def test_port_base_fixes_the_ports(tmp_path):
    code, _, _, _ = _supervise(tmp_path, {0: [0], 1: [0]}, port_base=41000)
    assert code == 0
    assert _starts(tmp_path, 1)[0]["tf_config"] == json.loads(tf_config(["localhost:41000", "localhost:41001"], 1))


def test_a_configuration_error_is_not_restarted(tmp_path):
    code, _, err, _ = _supervise(tmp_path, {0: ["sleep"], 1: [2]}, max_restarts=3)
    assert code == 2
    assert len(_starts(tmp_path, 0)) == len(_starts(tmp_path, 1)) == 1
    assert (tmp_path / "sigterm-0-0").exists()  # the other worker was stopped
    assert _launch_lines(err)[-1] == ("launch: worker 1 exited with code 2 (a configuration or data error): "
                                      "not restarted")


def test_a_worker_killed_by_a_signal_is_named_with_it_and_its_shell_code(tmp_path):
    code, _, err, _ = _supervise(tmp_path, {0: ["sleep", 0], 1: ["kill", 0]}, max_restarts=1)
    assert code == 0
    assert "launch: worker 1 was killed by SIGKILL; restarting all 2 workers" in err
    again = tmp_path / "again"
    again.mkdir()
    code, _, err, _ = _supervise(again, {0: ["sleep"], 1: ["kill"]}, max_restarts=0)
    assert code == 128 + signal.SIGKILL
    assert _launch_lines(err)[-1] == "launch: worker 1 was killed by SIGKILL; no restart left (0 of 0 used)"


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    code, _, _, seconds = _supervise(tmp_path, {0: ["ignore"], 1: [1]}, grace_seconds=0.5)
    assert code == 1
    assert seconds < 20  # not the 60 s it would sleep
    with pytest.raises(ProcessLookupError):
        os.kill(_starts(tmp_path, 0)[0]["pid"], 0)


def test_output_is_interleaved_line_by_line_with_a_prefix_per_worker(tmp_path):
    code, out, err, _ = _supervise(tmp_path, {0: [0], 1: [0]})
    assert code == 0
    assert sorted(out.splitlines()) == ["[worker 0] out from 0", "[worker 1] out from 1"]
    worker_errors = sorted(line for line in err.splitlines() if not line.startswith("launch: "))
    assert worker_errors == ["[worker 0] err from 0 (no newline)", "[worker 1] err from 1 (no newline)"]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_launcher_sends_sigterm_to_every_worker_and_waits_for_them(tmp_path, signal_number):
    def signal_when_both_started():
        deadline = time.monotonic() + 20
        while len(list(tmp_path.glob("start-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal_number)

    sender = threading.Thread(target=signal_when_both_started)
    sender.start()
    previous = signal.getsignal(signal_number)
    code, _, err, seconds = _supervise(tmp_path, {0: ["sleep"], 1: ["sleep"]}, max_restarts=3)
    sender.join()
    assert code == 143  # the workers' "checkpointed, resume me"
    assert sorted(path.name for path in tmp_path.glob("sigterm-*")) == ["sigterm-0-0", "sigterm-1-0"]
    assert not any("restarting" in line for line in _launch_lines(err))
    assert f"launch: stopped by {signal.Signals(signal_number).name}: worker 0 exited with code 143" in err
    assert seconds < 20
    assert signal.getsignal(signal_number) == previous  # the launcher's handler is gone


# --- trimbert launch: the workers' command ---


def test_launch_adds_the_multi_worker_strategy_and_refuses_any_other():
    from configs.errors import TrimbertError
    from pipeline.cli.launch import worker_arguments

    base = ["pretrain", "--config", "tiny", "--data", "d", "--model-dir", "m"]
    assert worker_arguments(["--", *base]) == [*base, "--strategy", "multi_worker"]
    assert worker_arguments(base, verbose=True) == ["--verbose", *base, "--strategy", "multi_worker"]
    for named in (["--strategy", "multi_worker"], ["--strategy=multi_worker"], ["--strat", "multi_worker"]):
        assert worker_arguments([*base, *named]) == [*base, *named]
    for named in (["--strategy", "mirrored"], ["--strategy=auto"], ["--strat", "one_device"]):
        with pytest.raises(TrimbertError, match="leave --strategy out"):
            worker_arguments([*base, *named])
    for wrong in ([], ["finetune", "--task", "sst2"]):
        with pytest.raises(TrimbertError, match="only pretrain runs under launch"):
            worker_arguments(wrong)


@pytest.mark.parametrize("argv, message", [
    (["launch", "--workers", "2"], "got nothing"),
    (["launch", "--workers", "2", "--", "finetune"], "only pretrain runs under launch"),
    (["launch", "--workers", "0", "--", "pretrain"], "--workers must be at least 1"),
    (["launch", "--workers", "2", "--", "pretrain", "--strategy", "tpu"], "leave --strategy out"),
    (["launch", "--workers", "2", "--image", "x", "--", "pretrain"], "--image is for --emit kubernetes only"),
    (["launch", "--workers", "2", "--name", "x", "--", "pretrain"], "--name is for --emit kubernetes only"),
    (["launch", "--workers", "2", "--port-base", "65535", "--", "pretrain"], "are not all valid ports"),
    (["launch", "--emit", "kubernetes", "--workers", "2", "--", "pretrain"], "needs --image"),
], ids=["no-command", "not-pretrain", "no-workers", "other-strategy", "image-locally", "name-locally", "ports",
        "no-image"])
def test_launch_errors_are_one_line_and_exit_2(argv, message, capsys):
    from pipeline.cli import main as cli

    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("trimbert launch: error: ")
    assert message in captured.err
