"""The result record every fine-tuning run writes (``result.json``).

A :class:`ResultRecord` is one (checkpoint, task) evaluation over several seeds:
per-seed dev (and labelled test) metrics, their mean and standard deviation,
the best-on-dev seed, and what it cost (fine-tune wall-clock and
accelerator-hours, plus the pre-training accelerator-hours read from the
``summary.json`` that pre-training writes next to or above its checkpoints).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

import storage
from configs.errors import TrimbertError
from pipeline import clock
from pipeline import model_dir as model_dir_lib
from pipeline.finetune import tasks

RESULT_FILENAME = "result.json"  # what fine-tuning writes; `trimbert report DIR` looks for *result.json
SUMMARY_LEVELS = 3  # the checkpoint itself (if a folder), its folder, and two above


@dataclasses.dataclass
class SeedResult:
    """One fine-tuning run.

    Args:
        seed: the run's random seed.
        dev_metrics: metrics on the task's dev split(s), "score" included.
        test_metrics: metrics on a labelled test split (the sentiment tasks); empty if none.
    """

    seed: int
    dev_metrics: dict[str, float]
    test_metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ResultRecord:
    """One (checkpoint, task) evaluation over several seeds; see :func:`make_record`.

    Args:
        checkpoint: path of the evaluated checkpoint or model folder.
        model_config: config name of the model (e.g. ``tiny``, ``minilm_l6``).
        parameters: encoder parameter count.
        task: task name (``pipeline.finetune.tasks.TASKS``).
        seed_results: one entry per seed, in run order.
        metric_mean: dev metric -> mean over seeds.
        metric_std: dev metric -> sample standard deviation over seeds (0 for one seed).
        test_metric_mean: labelled-test metric -> mean over seeds (empty if none).
        test_metric_std: labelled-test metric -> standard deviation over seeds.
        best_seed: the seed with the highest dev score (the first on ties).
        finetune_seconds: measured fine-tuning wall-clock, all seeds.
        finetune_accelerator_hours: devices x that wall-clock in hours.
        pretrain_accelerator_hours: from the checkpoint's ``summary.json``; ``None`` if not found.
        inference_latency_ms: CPU latency per example if measured, else ``None``.
        started_at: ISO-8601 UTC time the evaluation began.
        finished_at: ISO-8601 UTC time it ended.
        finetune_device_kind: ``GPU: <model>``, ``TPU`` or ``CPU: <model>`` (``None`` in older records).
        finetune_device_count: accelerators, or CPU cores used (``None`` in older records).
        finetune_gpu_hours: ``finetune_accelerator_hours`` when the devices are GPUs, else ``None``.
        serving_latency_ms: the best seed's CPU milliseconds per example through its SavedModel, raw text
            in, keyed by batch size (``"1"``, ``"32"``); ``None`` in older records.
    """

    checkpoint: str
    model_config: str
    parameters: int
    task: str
    seed_results: list[SeedResult]
    metric_mean: dict[str, float]
    metric_std: dict[str, float]
    test_metric_mean: dict[str, float]
    test_metric_std: dict[str, float]
    best_seed: int
    finetune_seconds: float
    finetune_accelerator_hours: float
    pretrain_accelerator_hours: float | None
    inference_latency_ms: float | None
    started_at: str
    finished_at: str
    finetune_device_kind: str | None = None
    finetune_device_count: int | None = None
    finetune_gpu_hours: float | None = None
    serving_latency_ms: dict[str, float] | None = None

    @property
    def seeds(self) -> list[int]:
        return [result.seed for result in self.seed_results]

    def serving_latency(self, batch_size: int) -> float | None:
        """SavedModel milliseconds per example at ``batch_size``, if measured."""
        return (self.serving_latency_ms or {}).get(str(batch_size))

    @property
    def score(self) -> float:
        """Mean dev score over seeds."""
        return self.metric_mean["score"]

    @property
    def best(self) -> SeedResult:
        """The best-on-dev seed's result."""
        return next(result for result in self.seed_results if result.seed == self.best_seed)

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": self.seeds, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> ResultRecord:
        """Builds a record from JSON data; errors name ``where`` and the bad field."""
        if not isinstance(raw, dict):
            raise TrimbertError(f"{where}: a result record must be a JSON object")
        names = [field.name for field in dataclasses.fields(cls)]
        optional = {field.name for field in dataclasses.fields(cls) if field.default is not dataclasses.MISSING}
        missing = [name for name in names if name not in raw and name not in optional]
        unknown = sorted(set(raw) - set(names) - {"seeds"})
        if missing or unknown:
            raise TrimbertError(f"{where}: not a result record (missing fields: {', '.join(missing) or '-'}; "
                                f"unknown fields: {', '.join(unknown) or '-'})")
        values = {name: raw[name] for name in names if name in raw}
        try:
            values["seed_results"] = [SeedResult(**result) for result in raw["seed_results"]]
        except TypeError as error:
            raise TrimbertError(f"{where}: malformed seed_results: {error}") from error
        return cls(**values)

    def save(self, path: str | pathlib.Path) -> pathlib.Path | str:
        """Writes the record as JSON atomically (local: temporary file + rename; URL: one object write).

        Returns a local path as ``pathlib.Path``, a URL as ``str``.
        """
        storage.makedirs(storage.parent(path))
        written = storage.write_json(path, self.to_dict())
        return written if storage.is_url(written) else pathlib.Path(written)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> ResultRecord:
        try:
            raw = storage.read_json(path)
        except (OSError, json.JSONDecodeError) as error:
            raise TrimbertError(f"{path}: cannot read result record: {error}") from error
        return cls.from_dict(raw, where=str(path))


def make_record(checkpoint: str | pathlib.Path, model_config: str, parameters: int, task: str | tasks.Task,
                seed_results: Sequence[SeedResult], finetune_seconds: float, devices: int,
                started_at: str, inference_latency_ms: float | None = None,
                finished_at: str | None = None, device_kind: str | None = None,
                serving_latency_ms: dict[int, float] | None = None) -> ResultRecord:
    """Summarises the seeds of one evaluation into a :class:`ResultRecord`.

    Args:
        checkpoint: the evaluated checkpoint or model folder.
        model_config: config name of the model.
        parameters: encoder parameter count.
        task: a built-in task's name, or a :class:`pipeline.finetune.tasks.Task` (a user's own task); the
            record holds its name.
        seed_results: one per seed; dev metrics must hold "score".
        finetune_seconds: measured fine-tuning wall-clock (``TrainingClock.seconds``), all seeds.
        devices: accelerators, or CPU cores, fine-tuning ran on (:class:`pipeline.clock.Devices`).
        started_at: ISO-8601 UTC start time (:func:`utc_now`).
        inference_latency_ms: measured CPU latency per example, if any.
        finished_at: ISO-8601 UTC end time; default now.
        device_kind: what ``devices`` are (:class:`pipeline.clock.Devices`), if known.
        serving_latency_ms: batch size -> SavedModel CPU milliseconds per example, if measured.
    """
    task = tasks.task_of(task).name  # an unknown name is an error here, not a record nobody can report
    if not seed_results:
        raise TrimbertError(f"{task}: a result needs at least one seed")
    dev_mean, dev_std = mean_and_std([result.dev_metrics for result in seed_results])
    test_mean, test_std = mean_and_std(
        [result.test_metrics for result in seed_results if result.test_metrics])
    best = max(seed_results, key=lambda result: result.dev_metrics["score"])  # max keeps the first on ties
    hours = clock.accelerator_hours(devices, finetune_seconds)
    return ResultRecord(
        checkpoint=str(checkpoint), model_config=model_config, parameters=int(parameters), task=task,
        seed_results=list(seed_results), metric_mean=dev_mean, metric_std=dev_std,
        test_metric_mean=test_mean, test_metric_std=test_std, best_seed=best.seed,
        finetune_seconds=float(finetune_seconds),
        finetune_accelerator_hours=hours,
        pretrain_accelerator_hours=read_pretrain_accelerator_hours(checkpoint),
        inference_latency_ms=inference_latency_ms, started_at=started_at,
        finished_at=finished_at or utc_now(), finetune_device_kind=device_kind, finetune_device_count=int(devices),
        finetune_gpu_hours=hours if device_kind is not None and device_kind.startswith("GPU") else None,
        serving_latency_ms=None if serving_latency_ms is None else {
            str(batch): float(milliseconds) for batch, milliseconds in serving_latency_ms.items()})


def mean_and_std(per_seed: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single seed) of each metric."""
    if not per_seed:
        return {}, {}
    names = list(per_seed[0])
    if any(list(values) != names for values in per_seed):
        raise TrimbertError(f"seeds report different metrics: {[sorted(values) for values in per_seed]}")
    columns = {name: np.array([values[name] for values in per_seed], dtype=np.float64) for name in names}
    mean = {name: float(column.mean()) for name, column in columns.items()}
    std = {name: float(column.std(ddof=1)) if len(column) > 1 else 0.0 for name, column in columns.items()}
    return mean, std


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def find_pretrain_summary(checkpoint: str | pathlib.Path) -> pathlib.Path | str | None:
    """The ``summary.json`` in the checkpoint folder or up to two folders above it, nearest first."""
    if storage.is_url(checkpoint):
        folder = str(checkpoint) if storage.isdir(checkpoint) else storage.parent(checkpoint)
        candidates = [folder]
        while len(candidates) < SUMMARY_LEVELS and storage.is_url(storage.parent(candidates[-1])):
            candidates.append(storage.parent(candidates[-1]))  # not above the bucket
        for candidate in candidates:
            if storage.isfile(storage.join(candidate, model_dir_lib.SUMMARY_FILE)):
                return storage.join(candidate, model_dir_lib.SUMMARY_FILE)
        return None
    checkpoint = pathlib.Path(checkpoint)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for candidate in [folder, *folder.parents][:SUMMARY_LEVELS]:
        if (candidate / model_dir_lib.SUMMARY_FILE).is_file():
            return candidate / model_dir_lib.SUMMARY_FILE
    return None


def read_pretrain_accelerator_hours(checkpoint: str | pathlib.Path) -> float | None:
    """Pre-training accelerator-hours from the checkpoint's ``summary.json``; ``None`` if absent.

    A Hugging Face or keras-hub model has no summary: its pre-training cost is unknown here.
    """
    summary = find_pretrain_summary(checkpoint)
    if summary is None:
        return None
    try:
        value = storage.read_json(summary).get("accelerator_hours")
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        raise TrimbertError(f"{summary}: cannot read the pre-training summary: {error}") from error
    return None if value is None else float(value)
