"""The watchdog on its own, in this process: a stall ends the run with exit 2, a SIGTERM with no step boundary
within the grace period with exit 143, each naming the last completed step and checkpoint; steps keep it quiet.

The whole-run versions (a real pre-training process whose input blocks on FIFOs) are in test_pretrain.py,
marked slow."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pipeline.pretrain import watchdog as watchdog_lib


class Exits(list):
    """(exit code, message) per exit; ``happened`` is set at the first."""

    def __init__(self):
        super().__init__()
        self.happened = threading.Event()


@pytest.fixture
def exits(monkeypatch):
    """The watchdog's exit, recorded instead of ending the process: only the first counts, as os._exit would
    end the process there (the watchdog's thread goes on polling until the test leaves it)."""
    recorded = Exits()

    def record(code: int, message: str) -> None:
        if not recorded.happened.is_set():
            recorded.append((code, message))
            recorded.happened.set()

    monkeypatch.setattr(watchdog_lib.Watchdog, "_exit", staticmethod(record))
    monkeypatch.setattr(watchdog_lib, "POLL_SECONDS", 0.05)
    return recorded


def _watchdog(stall_timeout=30.0, grace=30.0):
    return watchdog_lib.Watchdog(3, "the first step of phase 0", stall_timeout, grace, lambda: "ckpt-3 stays")


def test_no_step_within_the_stall_timeout_exits_2_naming_the_last_step(exits):
    started = time.monotonic()
    with _watchdog(stall_timeout=0.5):
        assert exits.happened.wait(10)
    assert 0.5 <= time.monotonic() - started < 5
    [(code, message)] = exits
    assert code == watchdog_lib.STALLED_EXIT_CODE == 2
    assert "no optimizer step completed in 0.5 s (pretrain.stall_timeout_seconds)" in message
    assert "last completed step 3, waiting on the first step of phase 0; ckpt-3 stays" in message


def test_steps_keep_a_run_alive_past_the_stall_timeout(exits):
    with _watchdog(stall_timeout=0.5) as watchdog:
        for step in range(4, 14):  # 1.5 s of steps, each well within the timeout
            time.sleep(0.15)
            watchdog.step_done(step, f"step {step + 1}")
    assert not exits


def test_sigterm_without_a_step_boundary_exits_143_after_the_grace(exits):
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # as the loop's flag handler
    try:
        with _watchdog(grace=0.5):
            os.kill(os.getpid(), signal.SIGTERM)
            signalled = time.monotonic()
            assert exits.happened.wait(10)
            assert 0.5 <= time.monotonic() - signalled < 5
    finally:
        signal.signal(signal.SIGTERM, previous)
    [(code, message)] = exits
    assert code == watchdog_lib.PREEMPTED_EXIT_CODE == 143
    assert "SIGTERM and no step ended in 0.5 s; exiting WITHOUT a checkpoint" in message
    assert "last completed step 3" in message and "ckpt-3 stays" in message


def test_a_step_boundary_after_sigterm_leaves_the_checkpoint_to_the_loop(exits):
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with _watchdog(grace=0.5) as watchdog:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            watchdog.step_done(4, "step 5")  # the loop reached a boundary: it saves and exits itself
            time.sleep(1.0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not exits


def test_a_second_sigterm_exits_at_once(exits):
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with _watchdog(grace=30.0):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)
            assert exits.happened.wait(5)
    finally:
        signal.signal(signal.SIGTERM, previous)
    [(code, message)] = exits
    assert code == 143 and "a second SIGTERM" in message
