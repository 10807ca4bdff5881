"""Choosing a ``tf.distribute`` strategy. Only the trainers call this module.

- ``one_device``: the first GPU, else the CPU.
- ``mirrored``: every local GPU, or N logical CPU devices (``num_cpu_replicas``)
  so multi-replica code runs on a CPU-only machine.
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster that
  ``TF_CONFIG`` describes (one process per worker).
- ``tpu``: ``TPUStrategy`` on the TPU at ``tpu_address`` (a name or grpc://
  address; empty means the local TPU VM).
- ``auto``: TPU if an address is given, multi-worker if TF_CONFIG lists more
  than one worker, mirrored if there are several GPUs or CPU replicas, else one device.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def split_cpu(num_replicas: int) -> list[str]:
    """Splits the CPU into ``num_replicas`` logical devices; call before TF runs anything."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    if num_replicas > 1:
        existing = tf.config.get_logical_device_configuration(cpus[0])
        if not existing or len(existing) != num_replicas:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_replicas)])
    return [device.name for device in tf.config.list_logical_devices("CPU")][:max(num_replicas, 1)]


def cluster_worker_count() -> int:
    """Workers listed in TF_CONFIG (0 when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    cluster = json.loads(raw).get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def runs_multi_worker(kind: str, tpu_address: str | None = None) -> bool:
    """Whether :func:`make_strategy` will build MultiWorkerMirroredStrategy over more than one task,
    known before it is built (from ``kind`` and TF_CONFIG; ``auto`` reads no device for this)."""
    several = cluster_worker_count() > 1
    return several and (kind == "multi_worker" or (kind == "auto" and tpu_address is None))


def cluster_tasks() -> list[tuple[str, str]]:
    """Every task TF_CONFIG lists as ``(name, address)``, the chief first then the workers in order;
    the name is TensorFlow's (``/job:worker/replica:0/task:1``), as its errors name a lost task."""
    raw = os.environ.get("TF_CONFIG")
    cluster = json.loads(raw).get("cluster", {}) if raw else {}
    return [(f"/job:{job}/replica:0/task:{index}", address)
            for job in ("chief", "worker") for index, address in enumerate(cluster.get(job, []))]


def this_task() -> str | None:
    """This process's task name from TF_CONFIG (``/job:worker/replica:0/task:0``); None without one."""
    raw = os.environ.get("TF_CONFIG")
    task = json.loads(raw).get("task", {}) if raw else {}
    if "type" not in task:
        return None
    return f"/job:{task['type']}/replica:0/task:{int(task.get('index', 0))}"


def make_strategy(kind: str = "auto", num_cpu_replicas: int = 1,
                  tpu_address: str | None = None) -> tf.distribute.Strategy:
    """Builds the strategy named ``kind`` (see the module docstring)."""
    import tensorflow as tf

    if kind not in STRATEGIES:
        raise ValueError(f"unknown strategy {kind!r}; choose from {', '.join(STRATEGIES)}")
    if kind == "auto":
        kind = _auto_kind(num_cpu_replicas, tpu_address)
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "multi_worker":
        if cluster_worker_count() < 1:
            raise ValueError("multi_worker needs TF_CONFIG with a cluster spec and a task")
        communication = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)
    # Physical (not logical) devices: listing logical ones would initialise the
    # runtime and forbid splitting the CPU afterwards.
    gpus = [f"/gpu:{index}" for index in range(len(tf.config.list_physical_devices("GPU")))]
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=gpus or split_cpu(num_cpu_replicas))
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")


def _auto_kind(num_cpu_replicas: int, tpu_address: str | None) -> str:
    import tensorflow as tf

    if tpu_address is not None:
        return "tpu"
    if cluster_worker_count() > 1:
        return "multi_worker"
    if num_cpu_replicas > 1 or len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "one_device"


def is_chief_process() -> bool:
    """Whether this process will be the chief, read from TF_CONFIG before any strategy exists."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    settings = json.loads(raw)
    task = settings.get("task", {})
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and \
        "chief" not in settings.get("cluster", {})


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes summaries and the canonical checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())
