"""The training clock pauses for evaluations and carries time across resumes."""

import time

import pytest

from pipeline.clock import TrainingClock, accelerator_hours


def test_clock_excludes_paused_work_and_adds_earlier_runs():
    clock = TrainingClock(devices=2, elapsed_before=3600.0)
    clock.start()
    time.sleep(0.05)
    with clock.paused():
        time.sleep(0.3)
    time.sleep(0.05)
    clock.stop()
    measured = clock.seconds - 3600.0
    assert 0.09 <= measured < 0.25
    assert clock.accelerator_hours == pytest.approx(2 * clock.seconds / 3600.0)


def test_accelerator_hours_is_devices_times_hours():
    assert accelerator_hours(8, 1800.0) == pytest.approx(4.0)
