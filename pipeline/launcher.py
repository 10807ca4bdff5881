"""Supervising the worker processes of one multi-worker run on this machine (``trimbert launch``).

What torchrun's elastic agent does for PyTorch (``--nproc-per-node N --max-restarts K``), for
``MultiWorkerMirroredStrategy``: start N workers, each with its own ``TF_CONFIG`` naming every
worker's address and its own index, and when one fails, stop them all and start all N again, up to
K times. A collective needs every worker, so a group that lost one member cannot go on: it is
restarted whole, and the run resumes from its last checkpoint (rerunning ``trimbert pretrain`` in
the same ``--model-dir`` resumes, and logs no step twice).

Facts relied on:

- The workers' exit codes (``trimbert pretrain``): 0 done; 2 a configuration or data error, which
  a restart would only repeat, so it is never restarted; anything else is restarted (143 preempted
  after a checkpoint, 75 a lost peer, 1 a crash, death by a signal).
- Each start takes fresh free ports on localhost (unless ``port_base`` fixes them): a port of the
  previous group may still be held by a process that is going away.
- Workers run in their own session (``start_new_session``): a Ctrl-C in the terminal reaches the
  launcher only, which sends the workers SIGTERM (and so they checkpoint together, as on a
  preemption) and waits for them; a second signal to the launcher kills them (SIGKILL).
- A worker that is stopped because another failed gets SIGTERM, then SIGKILL after
  ``grace_seconds``.
- Output: each line a worker writes goes to the launcher's stdout or stderr (as the worker wrote
  it) prefixed ``[worker i] ``; the launcher's own lines start with ``launch: `` on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

CONFIGURATION_ERROR_EXIT_CODE = 2  # trimbert's exit code for bad input: a restart would fail the same way
LOCALHOST = "localhost"


@dataclasses.dataclass(frozen=True)
class WorkerExit:
    """How worker ``worker`` ended; ``returncode`` as ``subprocess`` reports it (minus the signal number when a
    signal killed it)."""

    worker: int
    returncode: int

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number for a death by a signal."""
        return self.returncode if self.returncode >= 0 else 128 - self.returncode

    def describe(self) -> str:
        if self.returncode < 0:
            return f"worker {self.worker} was killed by {_signal_name(-self.returncode)}"
        return f"worker {self.worker} exited with code {self.returncode}"


def tf_config(addresses: Sequence[str], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in the cluster of ``addresses`` (``host:port``, by index)."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}})


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on localhost now (all bound at once, then released)."""
    handles = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handles.append(handle)
            handle.bind(("127.0.0.1", 0))
        return [handle.getsockname()[1] for handle in handles]
    finally:
        for handle in handles:
            handle.close()


class Supervisor:
    """Runs ``command`` as ``workers`` processes that form one cluster, restarting them all on a failure.

    Args:
        command: each worker's argv (the same for all; each gets its own ``TF_CONFIG``).
        workers: how many worker processes.
        max_restarts: how many times the whole group may be started again after a failure.
        port_base: worker i listens on ``port_base + i``; None: free ports, new ones at each start.
        grace_seconds: between SIGTERM and SIGKILL when the workers are stopped after a failure.
        env: the workers' environment, ``TF_CONFIG`` added (default: this process's).
        out, err: where the workers' stdout and stderr lines go, prefixed; the launcher's lines go to ``err``.
        poll_seconds: how often the workers' states are read.
    """

    def __init__(self, command: Sequence[str], workers: int, max_restarts: int = 0, port_base: int | None = None,
                 grace_seconds: float = 30.0, env: dict[str, str] | None = None, out: TextIO | None = None,
                 err: TextIO | None = None, poll_seconds: float = 0.1):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.command = list(command)
        self.workers = workers
        self.max_restarts = max_restarts
        self.port_base = port_base
        self.grace_seconds = grace_seconds
        self.env = dict(os.environ if env is None else env)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._signals: list[int] = []  # the signals the launcher received, in order

    def run(self) -> int:
        """Runs the group to the end; the exit code: 0, the failing worker's code when no restart is left or
        allowed, or (after a signal to the launcher) the first non-zero worker code."""
        handlers = self._install_signal_handlers()
        try:
            restarts = 0
            while True:
                failure = self._run_group()
                if failure is None:
                    return 0
                if self._signals:
                    self._say(f"stopped by {_signal_name(self._signals[0])}: {failure.describe()}")
                    return failure.exit_code
                if failure.exit_code == CONFIGURATION_ERROR_EXIT_CODE:
                    self._say(f"{failure.describe()} (a configuration or data error): not restarted")
                    return failure.exit_code
                if restarts >= self.max_restarts:
                    self._say(f"{failure.describe()}; no restart left ({restarts} of {self.max_restarts} used)")
                    return failure.exit_code
                restarts += 1
                self._say(f"{failure.describe()}; restarting all {self.workers} workers from the last checkpoint "
                          f"(restart {restarts} of {self.max_restarts})")
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)

    # --- one start of the group ---

    def _run_group(self) -> WorkerExit | None:
        """Starts the workers and waits for them; the failure that ended the group, or None when all exited 0."""
        ports = (list(range(self.port_base, self.port_base + self.workers)) if self.port_base is not None
                 else free_ports(self.workers))
        addresses = [f"{LOCALHOST}:{port}" for port in ports]
        processes: list[subprocess.Popen] = []
        pumps: list[threading.Thread] = []
        try:
            for index in range(self.workers):
                env = {**self.env, "TF_CONFIG": tf_config(addresses, index), "PYTHONUNBUFFERED": "1"}
                process = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, start_new_session=True)
                processes.append(process)
                pumps += [self._pump(process.stdout, self.out, index), self._pump(process.stderr, self.err, index)]
            self._say("started " + ", ".join(f"worker {index} (pid {process.pid}) at {addresses[index]}"
                                             for index, process in enumerate(processes)))
            failure = self._wait(processes)
        finally:
            self._stop(processes)  # nothing survives this group: an exception here leaves no orphan
            for pump in pumps:
                pump.join(timeout=5.0)
        return failure

    def _wait(self, processes: list[subprocess.Popen]) -> WorkerExit | None:
        forwarded = 0  # how many of the launcher's signals were passed on
        while True:
            if len(self._signals) > forwarded:
                forwarded = len(self._signals)
                for process in processes:
                    if process.poll() is None:
                        # The first signal asks the workers to checkpoint and stop; a second one insists.
                        process.send_signal(signal.SIGTERM if forwarded == 1 else signal.SIGKILL)
            codes = [process.poll() for process in processes]
            failed = [WorkerExit(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
            if all(code is not None for code in codes):
                return _first_failure(failed)
            if failed and not self._signals:
                return _first_failure(failed)
            time.sleep(self.poll_seconds)

    def _stop(self, processes: list[subprocess.Popen]) -> None:
        """SIGTERM to every worker still running, SIGKILL to those still running ``grace_seconds`` later."""
        running = [process for process in processes if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # --- output and signals ---

    def _pump(self, stream, sink: TextIO, index: int) -> threading.Thread:
        def copy() -> None:
            with stream:
                for raw in iter(stream.readline, b""):
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    with self._lock:
                        sink.write(f"[worker {index}] {line}\n")
                        sink.flush()

        thread = threading.Thread(target=copy, name=f"worker-{index}-output", daemon=True)
        thread.start()
        return thread

    def _say(self, line: str) -> None:
        with self._lock:
            self.err.write(f"launch: {line}\n")
            self.err.flush()

    def _install_signal_handlers(self) -> dict[int, object]:
        """SIGTERM and SIGINT are recorded (and passed on by :meth:`_wait`); only the main thread may install them."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, lambda signum, frame: self._signals.append(signum))
        return previous


def _first_failure(failed: list[WorkerExit]) -> WorkerExit | None:
    """Of workers found failed at the same look: a configuration error first (it decides that nothing restarts),
    else the lowest index."""
    if not failed:
        return None
    return next((f for f in failed if f.exit_code == CONFIGURATION_ERROR_EXIT_CODE), failed[0])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
