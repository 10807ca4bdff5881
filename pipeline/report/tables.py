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

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import storage
from configs.errors import TrimbertError
from pipeline.evaluation import record as result_record
from pipeline.evaluation.store import ResultStore
from pipeline.finetune import tasks as task_registry
from pipeline.report import output

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
        latency_batch1_ms: SavedModel CPU milliseconds per example at batch 1 (raw text in), mean over the
            records that measured it; ``None`` if none did (records written before it was measured).
        latency_batch32_ms: the same at batch 32.
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
    latency_batch1_ms: float | None
    latency_batch32_ms: float | None

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

    def latency(batch_size: int) -> float | None:
        return _average([r.serving_latency(batch_size) for r in ordered.values()
                         if r.serving_latency(batch_size) is not None])

    return ModelRow(
        label=label, checkpoint=checkpoint, model_config=first.model_config, parameters=first.parameters,
        records=ordered,
        glue_average=_average([r.score for name, r in ordered.items() if name in task_registry.GLUE_TASKS]),
        sentiment_average=_average([r.score for name, r in ordered.items() if name in task_registry.SENTIMENT_TASKS]),
        pretrain_accelerator_hours=max(pretrain_hours) if pretrain_hours else None,
        finetune_accelerator_hours=sum(r.finetune_accelerator_hours for r in ordered.values()),
        latency_batch1_ms=latency(1), latency_batch32_ms=latency(32))


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

MISSING = "–"  # a value the records do not have


def _number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}g}"


def _percent(value: float | None, std: float | None = None, seeds: int | None = None) -> str:
    return output.percent(value, std, missing=MISSING, seeds=seeds)


def markdown_table(rows: Sequence[ModelRow], title: str = "Trade-off report") -> str:
    """The report as Markdown: the trade-off table, then each task's metrics per model."""
    tasks = task_order({task for row in rows for task in row.records})
    overview = output.Table([
        output.Column("Model", lambda row: row.label),
        output.Column("Params", lambda row: row.parameters, lambda parameters: f"{parameters / 1e6:.1f}M"),
        *(output.Column(_display(task), lambda row, task=task: row.records.get(task),
                        lambda record: _percent(record.score, record.metric_std["score"], len(record.seeds))
                        if record else MISSING)
          for task in tasks),
        output.Column("GLUE avg", lambda row: row.glue_average, _percent),
        output.Column("GLUE tasks", lambda row: len(row.glue_tasks)),
        output.Column("Sentiment avg", lambda row: row.sentiment_average, _percent),
        output.Column("Pre-train acc-h", lambda row: row.pretrain_accelerator_hours, _number),
        output.Column("Fine-tune acc-h", lambda row: row.finetune_accelerator_hours, _number),
        output.Column("ms/ex b1", lambda row: row.latency_batch1_ms, _number),
        output.Column("ms/ex b32", lambda row: row.latency_batch32_ms, _number),
    ], rows)
    per_task = output.Table([  # rows: (model label, task, record)
        output.Column("Model", lambda line: line[0]),
        output.Column("Task", lambda line: _display(line[1])),
        output.Column("Metrics (x100, mean ± std)",
                      lambda line: _metrics_text(line[2].metric_mean, line[2].metric_std, len(line[2].seeds))),
        output.Column("Seeds", lambda line: len(line[2].seeds)),
        output.Column("Best-on-dev seed", lambda line: line[2].best_seed),
        output.Column("Best seed test", lambda line: _metrics_text(line[2].best.test_metrics) or MISSING),
    ], [(row.label, task, record) for row in rows for task, record in row.records.items()])
    return output.markdown_text([
        f"# {title}", "",
        "Scores x100, mean ± std over seeds (dev sets; the number of seeds instead of a std below three). "
        "GLUE avg: mean task score over the GLUE "
        "tasks present. acc-h: accelerator-hours (– : not recorded). ms/ex b1, b32: CPU milliseconds per "
        "example through the fine-tuned model's SavedModel, raw text in, at batch 1 and 32 (– : not measured).",
        "",
        *overview.markdown_lines(), "", "## Per-task metrics", "", *per_task.markdown_lines()])


def _metrics_text(means: dict[str, float], stds: dict[str, float] | None = None, seeds: int | None = None) -> str:
    """``name value`` x100 per metric but the score, with ``± std`` when ``stds`` are given (the
    number of seeds instead, below three)."""
    return ", ".join(f"{name} {_percent(mean, None if stds is None else stds[name], seeds)}"
                     for name, mean in means.items() if name != "score")


def row_dict(row: ModelRow) -> dict[str, Any]:
    """A row as plain data (metrics as fractions, unrounded), for JSON."""
    return {
        "model": row.label, "model_config": row.model_config, "checkpoint": row.checkpoint,
        "parameters": row.parameters, "glue_average": row.glue_average, "glue_tasks": row.glue_tasks,
        "sentiment_average": row.sentiment_average,
        "pretrain_accelerator_hours": row.pretrain_accelerator_hours,
        "finetune_accelerator_hours": row.finetune_accelerator_hours,
        "latency_batch1_ms": row.latency_batch1_ms,
        "latency_batch32_ms": row.latency_batch32_ms,
        "tasks": {task: {"score_mean": record.score, "score_std": record.metric_std["score"],
                         "metric_mean": record.metric_mean, "metric_std": record.metric_std,
                         "test_metric_mean": record.test_metric_mean, "seeds": record.seeds,
                         "best_seed": record.best_seed, "best_seed_test_metrics": record.best.test_metrics,
                         "finetune_accelerator_hours": record.finetune_accelerator_hours}
                  for task, record in row.records.items()},
    }


def data_table(rows: Sequence[ModelRow]) -> output.Table:
    """The unrounded table: in CSV one line per model with ``<task>.<metric>_mean`` / ``_std`` columns
    (every metric any row has for the task, in first-seen order); in JSON :func:`row_dict` per model."""
    tasks = task_order({task for row in rows for task in row.records})
    metric_names = {task: list(dict.fromkeys(name for row in rows if task in row.records
                                             for name in row.records[task].metric_mean))
                    for task in tasks}

    def metric(task: str, name: str, kind: str) -> Callable[[ModelRow], float | None]:
        def value(row: ModelRow) -> float | None:
            record = row.records.get(task)
            return None if record is None else (record.metric_mean if kind == "mean" else record.metric_std).get(name)
        return value

    return output.Table([
        output.Column("model", lambda row: row.label),
        output.Column("model_config", lambda row: row.model_config),
        output.Column("checkpoint", lambda row: row.checkpoint),
        output.Column("parameters", lambda row: row.parameters),
        *(output.Column(f"{task}.{name}_{kind}", metric(task, name, kind))
          for task in tasks for name in metric_names[task] for kind in ("mean", "std")),
        output.Column("glue_average", lambda row: row.glue_average),
        output.Column("glue_tasks", lambda row: len(row.glue_tasks)),
        output.Column("sentiment_average", lambda row: row.sentiment_average),
        output.Column("pretrain_accelerator_hours", lambda row: row.pretrain_accelerator_hours),
        output.Column("finetune_accelerator_hours", lambda row: row.finetune_accelerator_hours),
        output.Column("latency_batch1_ms", lambda row: row.latency_batch1_ms),
        output.Column("latency_batch32_ms", lambda row: row.latency_batch32_ms),
    ], rows, data=row_dict)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

PLOT_FILES = {"accelerator_hours": "score_vs_accelerator_hours.png", "parameters": "score_vs_parameters.png"}
HEADLINE_STYLES = {"GLUE average": {"marker": "o", "color": "C0"}, "sentiment average": {"marker": "s", "color": "C1"}}


def headline_series(rows: Sequence[ModelRow]) -> dict[str, list[tuple[ModelRow, float]]]:
    """Series to plot: GLUE average and sentiment average, each over the rows that have it."""
    series = {"GLUE average": [(row, row.glue_average) for row in rows if row.glue_average is not None],
              "sentiment average": [(row, row.sentiment_average) for row in rows
                                    if row.sentiment_average is not None]}
    return {name: points for name, points in series.items() if points}


def write_plots(rows: Sequence[ModelRow], out_dir: pathlib.Path | str) -> dict[str, pathlib.Path | str]:
    """Score against accelerator-hours and against parameters, one PNG each (local folder or URL)."""
    x_axes = {
        "accelerator_hours": (lambda row: row.total_accelerator_hours,
                              "accelerator-hours: pre-training + fine-tuning "
                              "(hollow marker: pre-training cost unknown, fine-tuning only)",
                              "Score vs accelerator-hours"),
        "parameters": (lambda row: row.parameters / 1e6, "parameters (millions)", "Score vs parameters"),
    }
    paths = {}
    for key, (x_of, x_label, title) in x_axes.items():
        series = []
        for name, points in headline_series(rows).items():
            series.append(output.Series(
                [output.Point(x_of(row), 100 * score, row.label,
                              hollow=key == "accelerator_hours" and row.pretrain_accelerator_hours is None)
                 for row, score in points], name=name, **HEADLINE_STYLES[name]))
        paths[key] = storage.as_given(storage.join(out_dir, PLOT_FILES[key]))
        output.scatter_plot(paths[key], series, x_label, "score x100 (dev, mean over seeds)", title,
                            log_x_when_wide=True)
    return paths


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
    table = data_table(rows)
    table.write_csv(paths["csv"])
    table.write_json(paths["json"], {"title": title})
    paths.update(write_plots(rows, out_dir))
    return paths


