"""Compute as a first-class metric: a training clock, accelerator-hours, FLOP/s.

Accelerator-hours are devices x wall-clock hours of the timed work only:
start-up (imports, graph tracing before the first step ends), evaluations and
checkpoint writes are paused out, as big_vision's core-hours clock does. On a
machine without accelerators the "devices" are the replicas the strategy runs
(logical CPU devices), so the figure stays comparable across runs here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator


@dataclasses.dataclass
class TrainingClock:
    """Wall-clock of the measured work, with pauses excluded.

    Args:
        devices: accelerators (or replicas) the work runs on.
        elapsed_before: seconds measured by an earlier run that this one resumes.
    """

    devices: int
    elapsed_before: float = 0.0
    _started: float | None = None
    _elapsed: float = 0.0

    def start(self) -> None:
        if self._started is None:
            self._started = time.perf_counter()

    def stop(self) -> None:
        if self._started is not None:
            self._elapsed += time.perf_counter() - self._started
            self._started = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Excludes the enclosed work (evaluation, checkpoint writing) from the clock."""
        running = self._started is not None
        self.stop()
        try:
            yield
        finally:
            if running:
                self.start()

    @property
    def seconds(self) -> float:
        """Measured seconds so far, this run and the runs it resumed."""
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.elapsed_before + self._elapsed + running

    @property
    def accelerator_hours(self) -> float:
        return accelerator_hours(self.devices, self.seconds)


def accelerator_hours(devices: int, seconds: float) -> float:
    """devices x wall-clock hours."""
    return devices * seconds / 3600.0


def measure_matmul_peak(size: int = 2048, repeats: int = 10, dtype: str = "float32") -> float:
    """Achievable FLOP/s of this machine: the best of ``repeats`` square matmuls.

    A ``size`` x ``size`` by ``size`` x ``size`` product is ``2 * size**3``
    FLOPs. Used as the denominator of model FLOP utilisation in benchmarks.
    """
    import tensorflow as tf

    a = tf.random.stateless_normal((size, size), seed=(1, 2), dtype=dtype)
    b = tf.random.stateless_normal((size, size), seed=(3, 4), dtype=dtype)
    product = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    product(a, b).numpy()  # trace and warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best
