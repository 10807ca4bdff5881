"""Compute as a first-class metric: a training clock, device-hours, FLOP/s.

Device-hours are devices x wall-clock hours of the timed work. Every training step counts, the
first one included; its tracing and compiling is also reported on its own (a run's summary says
how much of the time it was). Evaluations and checkpoint writes are paused out, as big_vision's
core-hours clock does.

What counts as a device (:class:`Devices`): the physical accelerators a run holds (GPUs, TPU
cores), else the CPU cores its process may use. Logical CPU replicas (``--num-cpu-replicas``) are
one machine's cores split for testing, never extra devices: two replicas on two cores are two
core-hours per hour, not four.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Iterator
from typing import Any


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


@dataclasses.dataclass(frozen=True)
class Devices:
    """What a run computes on.

    Args:
        kind: ``GPU: <model>``, ``TPU: <type>`` or ``CPU: <model>``.
        count: physical accelerators, or the CPU cores used (over every worker).
    """

    kind: str
    count: int

    @property
    def is_gpu(self) -> bool:
        return self.kind.startswith("GPU")

    def usage(self, seconds: float) -> dict[str, Any]:
        """The accounting fields of ``seconds`` of wall-clock on these devices."""
        hours = accelerator_hours(self.count, seconds)
        return {"device_kind": self.kind, "device_count": self.count, "wall_seconds": seconds,
                "device_hours": hours, "gpu_hours": hours if self.is_gpu else None}


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo or the platform reports it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpu_model() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    return details.get("device_name", "unknown")


def strategy_devices(strategy) -> Devices:
    """The devices a ``tf.distribute`` strategy trains on, over all its workers."""
    import tensorflow as tf

    local = strategy.extended.worker_devices  # this worker's replica devices
    workers = max(strategy.num_replicas_in_sync // max(len(local), 1), 1)
    device_type = tf.DeviceSpec.from_string(local[0]).device_type if local else "CPU"
    if device_type == "GPU":
        return Devices(f"GPU: {_gpu_model()}", strategy.num_replicas_in_sync)
    if device_type == "TPU":
        return Devices("TPU", strategy.num_replicas_in_sync)
    return Devices(f"CPU: {cpu_model()}", cpu_cores() * workers)


def default_devices() -> Devices:
    """What Keras ``fit`` outside a strategy runs on: the first GPU, else this process's CPU cores."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return Devices(f"GPU: {_gpu_model()}", 1)
    return Devices(f"CPU: {cpu_model()}", cpu_cores())


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


def median_call_seconds(call, repeats: int, warm_up: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``call`` after ``warm_up`` untimed ones (tracing,
    kernel selection, caches); ``call`` must return only once its result is ready (e.g. ``.numpy()``)."""
    for _ in range(warm_up):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)
