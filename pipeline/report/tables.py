"""``trimbert report RESULTS... --out DIR``: the accuracy / compute trade-off table and plots.

Reads result records (``result.json`` files, folders searched for
``*result.json``, or a scheduled-evaluation SQLite store), keeps the newest
record per (checkpoint, task), and writes one row per checkpoint:

    report.md    Markdown: task scores x100 as mean ± std over seeds, GLUE
                 average, sentiment average, costs; then per-metric detail
    report.csv   the same numbers unrounded (metrics as fractions 0..1)
    report.json  the same, nested per task
    score_vs_accelerator_hours.png, score_vs_parameters.png

The GLUE average is the mean task score over the GLUE tasks present in that
row (GLUE's own rule: a task with two metrics counts their mean once, MNLI its
matched and mismatched accuracy); rows with different task sets say so in the
``GLUE tasks`` column. Sentiment tasks get their own average, never mixed in.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

import storage
from configs.errors import TrimbertError
from pipeline.evaluation import record as result_record
from pipeline.evaluation.store import ResultStore
from pipeline.finetune import tasks as task_registry
from pipeline.report.plots import write_plots

SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclasses.dataclass
class ModelRow:
    """One checkpoint's line in the report.

    Args:
        label: model config name, with the checkpoint's name when two rows share a config.
        records: task name -> its result record.
        glue_average: mean score over the GLUE tasks present; ``None`` if none.
        sentiment_average: mean score over the sentiment tasks present; ``None`` if none.
        pretrain_accelerator_hours: from the checkpoint's summary; ``None`` if unknown.
        finetune_accelerator_hours: summed over this row's tasks.
        inference_latency_ms: mean over the records that measured it; ``None`` if none did.
    """

    label: str
    checkpoint: str
    model_config: str
    parameters: int
    records: dict[str, result_record.ResultRecord]
    glue_average: float | None
    sentiment_average: float | None
    pretrain_accelerator_hours: float | None
    finetune_accelerator_hours: float
    inference_latency_ms: float | None

    @property
    def glue_tasks(self) -> list[str]:
        return [task for task in self.records if task in task_registry.GLUE_TASKS]

    @property
    def total_accelerator_hours(self) -> float:
        """Pre-training (when known) plus fine-tuning."""
        return (self.pretrain_accelerator_hours or 0.0) + self.finetune_accelerator_hours


# ---------------------------------------------------------------------------
# Reading and grouping
# ---------------------------------------------------------------------------


def read_records(paths: Sequence[str | pathlib.Path]) -> list[result_record.ResultRecord]:
    """Records from JSON files, folders (``**/*result.json``) and SQLite stores.

    Args:
        paths: files or folders, as given on the command line (local paths or URLs).
    """
    records = []
    for path in (storage.as_given(str(path)) for path in paths):
        if storage.isdir(path):
            found = _find_results(path)
            if not found:
                raise TrimbertError(f"{path}: no *{result_record.RESULT_FILENAME} files in this folder")
            records.extend(result_record.ResultRecord.load(file) for file in found)
        elif not storage.isfile(path):
            raise TrimbertError(f"{path}: no such file or folder")
        elif _is_sqlite(path):
            with ResultStore(path) as store:
                records.extend(store.results())
        else:
            records.append(result_record.ResultRecord.load(path))
    return records


def _find_results(folder: pathlib.Path | str) -> list[pathlib.Path | str]:
    """Every ``*result.json`` below ``folder``, except in hidden folders: those hold work in progress
    (a scheduled evaluation's claim folders), not results."""
    if storage.is_url(folder):
        prefix = str(folder).rstrip("/") + "/"
        return [path for path in storage.walk_files(folder) if path.endswith(result_record.RESULT_FILENAME)
                and not any(part.startswith(".") for part in path[len(prefix):].split("/"))]
    return sorted(file for file in folder.rglob(f"*{result_record.RESULT_FILENAME}")
                  if not any(part.startswith(".") for part in file.relative_to(folder).parts))


def _is_sqlite(path: pathlib.Path | str) -> bool:
    return storage.read_head(path, len(SQLITE_MAGIC)) == SQLITE_MAGIC


def build_rows(records: Sequence[result_record.ResultRecord]) -> list[ModelRow]:
    """One row per checkpoint (newest record per task), in order of first appearance."""
    newest: dict[str, dict[str, result_record.ResultRecord]] = {}
    for record in records:
        tasks = newest.setdefault(record.checkpoint, {})
        if record.task not in tasks or record.finished_at >= tasks[record.task].finished_at:
            tasks[record.task] = record
    config_counts: dict[str, int] = {}
    for tasks in newest.values():
        name = next(iter(tasks.values())).model_config
        config_counts[name] = config_counts.get(name, 0) + 1
    return [_row(checkpoint, tasks, config_counts) for checkpoint, tasks in newest.items()]


def _row(checkpoint: str, tasks: dict[str, result_record.ResultRecord], config_counts: dict[str, int]) -> ModelRow:
    ordered = {name: tasks[name] for name in task_order(tasks)}
    first = next(iter(ordered.values()))
    label = first.model_config
    if config_counts[label] > 1:
        label = f"{label} ({pathlib.PurePath(checkpoint).name})"
    pretrain_hours = [r.pretrain_accelerator_hours for r in ordered.values()
                      if r.pretrain_accelerator_hours is not None]
    latencies = [r.inference_latency_ms for r in ordered.values() if r.inference_latency_ms is not None]
    return ModelRow(
        label=label, checkpoint=checkpoint, model_config=first.model_config, parameters=first.parameters,
        records=ordered,
        glue_average=_average([r.score for name, r in ordered.items() if name in task_registry.GLUE_TASKS]),
        sentiment_average=_average([r.score for name, r in ordered.items() if name in task_registry.SENTIMENT_TASKS]),
        pretrain_accelerator_hours=max(pretrain_hours) if pretrain_hours else None,
        finetune_accelerator_hours=sum(r.finetune_accelerator_hours for r in ordered.values()),
        inference_latency_ms=_average(latencies))


def _average(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def task_order(tasks) -> list[str]:
    """Task names in the task table's order (GLUE first), unknown names last."""
    known = [name for name in task_registry.TASKS if name in tasks]
    return known + sorted(name for name in tasks if name not in task_registry.TASKS)


def _display(task: str) -> str:
    return task_registry.TASKS[task].display_name if task in task_registry.TASKS else task


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def _percent(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" if std is None else f"{100 * value:.1f} ± {100 * std:.1f}"


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def markdown_table(rows: Sequence[ModelRow], title: str = "Trade-off report") -> str:
    """The report as Markdown: the trade-off table, then each task's metrics per model."""
    tasks = task_order({task for row in rows for task in row.records})
    header = ["Model", "Params", *map(_display, tasks), "GLUE avg", "GLUE tasks", "Sentiment avg",
              "Pre-train acc-h", "Fine-tune acc-h", "CPU latency ms"]
    lines = [f"# {title}", "",
             "Scores x100, mean ± std over seeds (dev sets). GLUE avg: mean task score over the GLUE "
             "tasks present. acc-h: accelerator-hours (– : not recorded).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, f"{row.parameters / 1e6:.1f}M"]
        for task in tasks:
            record = row.records.get(task)
            cells.append(_percent(record.score, record.metric_std["score"]) if record else "–")
        cells += [_percent(row.glue_average), str(len(row.glue_tasks)), _percent(row.sentiment_average),
                  _number(row.pretrain_accelerator_hours), _number(row.finetune_accelerator_hours),
                  _number(row.inference_latency_ms)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Per-task metrics", "",
              "| Model | Task | Metrics (x100, mean ± std) | Seeds | Best-on-dev seed | Best seed test |",
              "|---|---|---|---|---|---|"]
    for row in rows:
        for task, record in row.records.items():
            metric_text = ", ".join(f"{name} {_percent(mean, record.metric_std[name])}"
                                    for name, mean in record.metric_mean.items() if name != "score")
            best_test = ", ".join(f"{name} {_percent(value)}" for name, value
                                  in record.best.test_metrics.items() if name != "score") or "–"
            lines.append(f"| {row.label} | {_display(task)} | {metric_text} | {len(record.seeds)} | "
                         f"{record.best_seed} | {best_test} |")
    return "\n".join(lines) + "\n"


def row_dict(row: ModelRow) -> dict[str, Any]:
    """A row as plain data (metrics as fractions, unrounded), for JSON."""
    return {
        "model": row.label, "model_config": row.model_config, "checkpoint": row.checkpoint,
        "parameters": row.parameters, "glue_average": row.glue_average, "glue_tasks": row.glue_tasks,
        "sentiment_average": row.sentiment_average,
        "pretrain_accelerator_hours": row.pretrain_accelerator_hours,
        "finetune_accelerator_hours": row.finetune_accelerator_hours,
        "inference_latency_ms": row.inference_latency_ms,
        "tasks": {task: {"score_mean": record.score, "score_std": record.metric_std["score"],
                         "metric_mean": record.metric_mean, "metric_std": record.metric_std,
                         "test_metric_mean": record.test_metric_mean, "seeds": record.seeds,
                         "best_seed": record.best_seed, "best_seed_test_metrics": record.best.test_metrics,
                         "finetune_accelerator_hours": record.finetune_accelerator_hours}
                  for task, record in row.records.items()},
    }


def write_csv(rows: Sequence[ModelRow], path: pathlib.Path | str) -> None:
    """One line per model; per task ``<task>.<metric>_mean`` / ``_std`` columns."""
    tasks = task_order({task for row in rows for task in row.records})
    metric_names = {task: next(row.records[task] for row in rows if task in row.records).metric_mean
                    for task in tasks}
    task_columns = [f"{task}.{metric}_{kind}" for task in tasks for metric in metric_names[task]
                    for kind in ("mean", "std")]
    columns = ["model", "model_config", "checkpoint", "parameters", *task_columns, "glue_average",
               "glue_tasks", "sentiment_average", "pretrain_accelerator_hours",
               "finetune_accelerator_hours", "inference_latency_ms"]
    handle = io.StringIO(newline="")  # written whole at the end: one object write on object storage
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        line = {key: value for key, value in row_dict(row).items() if key in columns}
        line["glue_tasks"] = len(row.glue_tasks)
        for task, record in row.records.items():
            for metric in record.metric_mean:
                line[f"{task}.{metric}_mean"] = record.metric_mean[metric]
                line[f"{task}.{metric}_std"] = record.metric_std[metric]
        writer.writerow({column: "" if line.get(column) is None else line[column] for column in columns})
    storage.write_text(path, handle.getvalue())


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Whole report
# ---------------------------------------------------------------------------


def write_report(records: Sequence[result_record.ResultRecord], out_dir: pathlib.Path | str,
                 title: str = "Trade-off report") -> dict[str, pathlib.Path | str]:
    """Writes report.md, report.csv, report.json and the two plots; returns their paths.

    Args:
        records: result records (several per checkpoint: one per task).
        out_dir: folder for the outputs (created; local or a URL). Local paths come back as
            ``pathlib.Path``, URLs as ``str``.
        title: heading of the Markdown report.
    """
    if not records:
        raise TrimbertError("no result records to report")
    rows = build_rows(records)
    out_dir = storage.makedirs(str(out_dir))
    paths = {kind: storage.as_given(storage.join(out_dir, f"report.{extension}"))
             for kind, extension in (("markdown", "md"), ("csv", "csv"), ("json", "json"))}
    storage.write_text(paths["markdown"], markdown_table(rows, title))
    write_csv(rows, paths["csv"])
    storage.write_json(paths["json"], {"title": title, "rows": [row_dict(row) for row in rows]})
    paths.update(write_plots(rows, out_dir))
    return paths


