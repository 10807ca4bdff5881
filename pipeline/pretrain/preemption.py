"""SIGTERM during pre-training: every worker saves a checkpoint at the same step, then the run exits 143.

The loop (``pipeline.pretrain.loop``) checks a flag after each step and before each held-out batch;
the flag is set by a SIGTERM handler, which Python runs in the main thread between bytecodes (the
watchdog, ``pipeline.pretrain.watchdog``, covers a main thread stuck inside TensorFlow).

- One device, mirrored replicas, TPU: the flag is this process's own, read whenever the loop asks.
- MultiWorkerMirroredStrategy: a preempted machine signals only its own worker. Were that worker to
  save alone and leave, the others would block in their next collective until the heartbeat
  timeout, and a rerun would resume from the chief's older checkpoint. So the workers agree: at each
  step boundary (:meth:`SigtermStop.agree`) every worker contributes a vector over the cluster's
  tasks (``distribution.cluster_tasks``) holding 1 at its own position if it has seen SIGTERM, the
  vectors are summed over all replicas of all workers (one small all-reduce; the workers call it at
  the same points because they run the same steps and evaluations), and any non-zero entry stops
  every worker at that step: each saves that step's checkpoint and the run exits 143, naming the
  tasks that got the signal. Between held-out batches the same sum decides, so an evaluation is cut
  short at the same batch everywhere.

Once MultiWorkerMirroredStrategy exists, TensorFlow's coordination agent has its own C++ SIGTERM
handler, which only records the signal: the process would no longer end on SIGTERM during the rest
of the start-up. :func:`remember_sigterm` installs a Python handler right after the strategy is
built; a signal it records reaches the first :class:`SigtermStop`, so the first step's agreement
stops every worker with a checkpoint (the start-up's watchdog exits 143 without one if a start-up
stage goes on for ``pretrain.sigterm_grace_seconds`` after the signal).

``tf.distribute.experimental.PreemptionCheckpointHandler`` does the same through the coordination
service, but it owns the checkpoint manager and restores on its own at construction; here the loop
keeps choosing what to resume from (``pipeline.pretrain.checkpoints``) and where each worker writes.
"""

from __future__ import annotations

import signal

import tensorflow as tf

from pipeline.pretrain import distribution

_EARLY_SIGTERMS: list[int] = []  # signals remember_sigterm's handler recorded, not yet taken by a SigtermStop


def remember_sigterm() -> None:
    """From now on, SIGTERM is recorded for the next :class:`SigtermStop` (main thread only)."""
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: _EARLY_SIGTERMS.append(signum))
    except ValueError:  # not the main thread: leave signals alone
        pass


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint was written and the run can be resumed."""


class SigtermStop:
    """Context manager around a phase's loop: turns SIGTERM into a stop the loop acts on at a step boundary.

    Args:
        strategy: the run's strategy; under MultiWorkerMirroredStrategy with more than one task in
            TF_CONFIG the workers agree on the stop (see the module docstring).
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        self._signalled_here = False
        self._previous = None
        self._tasks = [name for name, _ in distribution.cluster_tasks()] \
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else []
        self._agreed: tuple[str, ...] = ()
        if len(self._tasks) > 1:
            here = distribution.this_task()
            self._position = self._tasks.index(here)
            self._sum = _summed_over_replicas(strategy)
        else:
            self._tasks = []

    def __enter__(self) -> SigtermStop:
        self._signalled_here = self._signalled_here or bool(_EARLY_SIGTERMS)
        _EARLY_SIGTERMS.clear()
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame) -> None:
        self._signalled_here = True

    @property
    def raised(self) -> bool:
        """Whether the loop must checkpoint and stop: this process's flag, or, across workers, the last
        :meth:`agree`'s verdict (so every worker reads the same answer between two agreements)."""
        return bool(self._agreed) if self._tasks else self._signalled_here

    def agree(self) -> bool:
        """At a step boundary, the same one on every worker: across workers, sums who has seen SIGTERM
        (a collective: every worker must call it here); otherwise just reads the flag."""
        if self._tasks and not self._agreed:
            mine = [1.0 if index == self._position and self._signalled_here else 0.0
                    for index in range(len(self._tasks))]
            counts = self._sum(tf.constant(mine, tf.float32)).numpy()
            self._agreed = tuple(task for task, count in zip(self._tasks, counts, strict=True) if count > 0)
        return self.raised

    def is_raised(self) -> bool:
        """:meth:`agree` as the held-out evaluator's ``interrupted`` check (called before each batch)."""
        return self.agree()

    def saved(self, step: int, checkpoint: str) -> str:
        """The line the loop logs after saving ``checkpoint`` at ``step`` on the way out."""
        if not self._tasks:
            return f"SIGTERM: checkpoint saved at step {step}; rerun the same command to resume"
        received = ", ".join(f"task {self._tasks.index(task)} ({task})" for task in self._agreed)
        return (f"SIGTERM: checkpoint saved at step {step} by every worker ({checkpoint}); the signal reached "
                f"{received}; rerun every worker's command to resume")


def _summed_over_replicas(strategy: tf.distribute.Strategy):
    """A function summing a float vector over every replica of every worker (each worker's replicas
    count it once each, so only zero versus non-zero is meaningful)."""

    @tf.function
    def summed(vector):
        per_replica = strategy.run(lambda: tf.identity(vector))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return summed
