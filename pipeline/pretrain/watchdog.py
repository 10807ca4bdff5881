"""Ends a training run that stopped making progress, and honours SIGTERM while the loop is blocked.

The loop checks its SIGTERM flag only between steps, and Python runs signal handlers only in the
main thread between bytecodes: while ``train_step`` waits inside TensorFlow for an input batch or
a collective that never comes, neither happens. This thread does not depend on the main one:

* no step completed for ``stall_timeout`` seconds: print what the run was waiting on and the last
  completed step, exit 2 (the last checkpoint on disk stays the last good one); a watchdog over a
  run's start-up (``startup_exit_code``: strategy, model build, restore, where a multi-worker run
  first waits on its peers) names the stage and exits with that code, 75 when the run is restartable;
* SIGTERM and no step boundary within ``grace`` seconds (or a second SIGTERM): exit 143 without
  a checkpoint, saying so. At a boundary the loop itself checkpoints and exits 143, as before.

The signal reaches this thread through ``signal.set_wakeup_fd``: CPython's C-level handler writes
the signal number to a socket immediately, even while the main thread is inside TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

# The exit codes a supervisor (``trimbert launch``) acts on; every other module imports them from here.
STALLED_EXIT_CODE = 2  # the CLI's exit code for errors: do not restart unchanged
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped, resume me"
RESTART_EXIT_CODE = 75  # EX_TEMPFAIL: a peer was lost or never came up; restart every worker to resume
POLL_SECONDS = 0.5


@dataclasses.dataclass
class _Progress:
    """What the loop last reported; written by the main thread, read by the watchdog."""

    step: int
    waiting_on: str
    since: float
    sigterm_at: float | None = None
    sigterms: int = 0


class Watchdog:
    """Context manager around a phase's loop; call :meth:`step_done` after every optimizer step.

    Args:
        step: the step the phase starts from.
        waiting_on: what the first step waits on (tracing, compiling, the first batch).
        stall_timeout: seconds without a completed step before the run is stopped.
        grace: seconds after SIGTERM to reach a step boundary before exiting without a checkpoint.
        describe_checkpoint: returns the last checkpoint on disk, for the messages.
        startup_exit_code: None for a phase's loop; for a start-up (no step yet, stages instead), the code
            a stall exits with: :data:`RESTART_EXIT_CODE` where the stage waits on other workers,
            else :data:`STALLED_EXIT_CODE`.
    """

    def __init__(self, step: int, waiting_on: str, stall_timeout: float, grace: float,
                 describe_checkpoint: Callable[[], str], startup_exit_code: int | None = None):
        self._progress = _Progress(step, waiting_on, time.monotonic())
        self._stall_timeout = stall_timeout
        self._startup_exit_code = startup_exit_code
        self._grace = grace
        self._describe_checkpoint = describe_checkpoint
        self._finished = threading.Event()
        self._receiver, self._sender = socket.socketpair()
        self._sender.setblocking(False)
        self._previous_wakeup = None
        self._thread = threading.Thread(target=self._watch, name="trimbert-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        try:
            self._previous_wakeup = signal.set_wakeup_fd(self._sender.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread: signals are not ours to watch
            self._previous_wakeup = None
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """Ends the watch (what ``with`` does on leaving); a second call does nothing."""
        if self._finished.is_set():
            return
        self._finished.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._previous_wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
        self._receiver.close()
        self._sender.close()

    def step_done(self, step: int, waiting_on: str) -> None:
        """A step boundary: resets the stall clock and ends any SIGTERM countdown (the loop saves now)."""
        self._progress = _Progress(step, waiting_on, time.monotonic())

    def unwatched(self, step: int, doing: str) -> None:
        """A stage that may take as long as it needs (reading all the data): no stall until the next
        :meth:`step_done`."""
        self._progress = _Progress(step, doing, math.inf)

    def completed_step(self) -> int:
        """The last step :meth:`step_done` reported (the phase's first step until then)."""
        return self._progress.step

    def _watch(self) -> None:
        while not self._finished.is_set():
            readable, _, _ = select.select([self._receiver], [], [], POLL_SECONDS)
            if readable:
                self._count_sigterms(self._receiver.recv(64))
            self._check(time.monotonic())

    def _count_sigterms(self, signal_numbers: bytes) -> None:
        progress = self._progress
        for number in signal_numbers:
            if number == signal.SIGTERM:
                progress.sigterms += 1
                progress.sigterm_at = progress.sigterm_at or time.monotonic()

    def _check(self, now: float) -> None:
        progress = self._progress
        if self._finished.is_set():
            return
        if progress.sigterms > 1 or (progress.sigterm_at and now - progress.sigterm_at > self._grace):
            reason = "a second SIGTERM" if progress.sigterms > 1 else f"SIGTERM and no step ended in {self._grace:g} s"
            self._exit(PREEMPTED_EXIT_CODE, f"pretrain: {reason}; exiting WITHOUT a checkpoint of this run's "
                       f"last steps (last completed step {progress.step}, waiting on {progress.waiting_on}); "
                       f"{self._describe_checkpoint()}; rerun the same command to resume from it")
        if now - progress.since > self._stall_timeout and self._startup_exit_code is not None:
            code = self._startup_exit_code
            advice = "restart every worker once they can reach each other" if code == RESTART_EXIT_CODE else \
                "the run did not start"
            self._exit(code, f"trimbert pretrain: {'error: ' if code == STALLED_EXIT_CODE else ''}start-up made no "
                       f"progress in {self._stall_timeout:g} s (pretrain.stall_timeout_seconds) while waiting on "
                       f"{progress.waiting_on}; {self._describe_checkpoint()}; exit {code}: {advice}")
        if now - progress.since > self._stall_timeout:
            self._exit(STALLED_EXIT_CODE, f"trimbert pretrain: error: no optimizer step completed in "
                       f"{self._stall_timeout:g} s (pretrain.stall_timeout_seconds); last completed step "
                       f"{progress.step}, waiting on {progress.waiting_on}; {self._describe_checkpoint()}")

    @staticmethod
    def _exit(code: int, message: str) -> None:
        # The main thread is stuck inside TensorFlow, so unwinding it is not possible: flush and leave.
        sys.stdout.flush()
        print(message, file=sys.stderr, flush=True)
        os._exit(code)
