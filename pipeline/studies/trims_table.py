"""The table and plot of ``trimbert study trims``: cost and accuracy of every row, against the reference.

``OUT/trims.md`` (scores x100), ``trims.csv`` (unrounded), ``trims.json`` (also the findings) and
``trims.png`` (mean score over tasks against parameters). The reference row is ``untrimmed`` when
the study has one, else the first row; every task column gives the row's mean ± std over seeds and
its difference from the reference. Findings compare each row with the reference and, when the
study has one, with ``random-init``: a difference counts when it exceeds two standard deviations
(the larger of the two rows' seed standard deviations).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics

import storage
from pipeline.studies.trim_specs import RANDOM_INIT, UNTRIMMED

TABLE_NAME = "trims"


@dataclasses.dataclass
class TrimRow:
    """One row of the table.

    Args:
        name: the trim spec.
        parameters: encoder parameters.
        flops_per_token: forward FLOPs per token at the fine-tuning sequence length.
        pretrain_device_hours: pre-training or healing device-hours (0 when the row did not train).
        finetune_device_hours: fine-tuning device-hours, all tasks and seeds.
        latency_ms: CPU inference latency per example (the first task's measurement).
        scores: task -> (mean, std) of the dev score over seeds.
        test_accuracy: task -> mean labelled-test accuracy, for tasks that have one.
    """

    name: str
    parameters: int
    flops_per_token: int
    pretrain_device_hours: float
    finetune_device_hours: float
    latency_ms: float | None
    scores: dict[str, tuple[float, float]]
    test_accuracy: dict[str, float]

    @property
    def mean_score(self) -> float:
        return statistics.fmean(mean for mean, _ in self.scores.values())


def make_row(spec, model, records: dict, seq_len: int) -> TrimRow:
    """A row from its model (``trims.RowModel``) and its fine-tuning records (task -> ResultRecord)."""
    from models.params import flops_per_token

    first = next(iter(records.values()))
    summary = model.pretrain_summary or {}
    return TrimRow(
        name=spec.name, parameters=first.parameters, flops_per_token=flops_per_token(model.config, seq_len),
        pretrain_device_hours=float(summary.get("device_hours", 0.0)),
        finetune_device_hours=sum(record.finetune_accelerator_hours for record in records.values()),
        latency_ms=first.inference_latency_ms,
        scores={task: (record.metric_mean["score"], record.metric_std["score"]) for task, record in records.items()},
        test_accuracy={task: record.test_metric_mean["accuracy"] for task, record in records.items()
                       if "accuracy" in record.test_metric_mean})


def reference_row(rows: list[TrimRow]) -> TrimRow:
    return next((row for row in rows if row.name == UNTRIMMED), rows[0])


def beats(row: TrimRow, other: TrimRow, task: str) -> bool:
    """Whether ``row``'s mean exceeds ``other``'s by more than two standard deviations (the larger of the two)."""
    (mean, std), (other_mean, other_std) = row.scores[task], other.scores[task]
    return mean - other_mean > 2 * max(std, other_std)


def findings(rows: list[TrimRow]) -> list[str]:
    """Per row: its parameters and mean score against the reference, and whether it beats random-init."""
    reference = reference_row(rows)
    random_init = next((row for row in rows if row.name == RANDOM_INIT), None)
    tasks = list(reference.scores)
    lines = []
    for row in rows:
        line = (f"{row.name}: {row.parameters / reference.parameters:.0%} of the reference's parameters, "
                f"mean score {100 * row.mean_score:.1f} ({100 * (row.mean_score - reference.mean_score):+.1f})")
        if random_init is not None and row is not random_init:
            won = [task for task in tasks if beats(row, random_init, task)]
            line += f"; beats random-init by > 2 std on {len(won)} of {len(tasks)} tasks"
        lines.append(line)
    return lines


def _cell(row: TrimRow, reference: TrimRow, task: str) -> str:
    mean, std = row.scores[task]
    delta = "" if row is reference else f" ({100 * (mean - reference.scores[task][0]):+.1f})"
    return f"{100 * mean:.1f} ± {100 * std:.1f}{delta}"


def write_table(rows: list[TrimRow], out: str, study) -> None:
    """Writes ``trims.{md,csv,json,png}`` into ``out`` (local folder or URL)."""
    reference = reference_row(rows)
    tasks = list(reference.scores)
    finetune = study.config.finetune
    lines = [f"# Trim study: {', '.join(tasks)}", "",
             f"Models: {'trimmed from ' + study.source if study.source else 'pre-trained from scratch'} "
             f"(config {study.config.name}). Fine-tuning: seq_len {finetune.seq_len}, batch {finetune.batch_size}, "
             f"epochs {finetune.epochs:g}, learning rate {finetune.learning_rate:g}, seeds {list(finetune.seeds)}. "
             f"Scores: the task's dev score x100, mean ± std over seeds (difference from {reference.name}).", "",
             "| row | parameters | FLOPs/token | pre-train device-h | fine-tune device-h | latency ms/ex | "
             + " | ".join(tasks) + " | mean |",
             "| --- " * (7 + len(tasks)) + "|"]
    for row in rows:
        mean_delta = "" if row is reference else f" ({100 * (row.mean_score - reference.mean_score):+.1f})"
        lines.append(
            f"| {row.name} | {row.parameters:,} | {row.flops_per_token / 1e6:.1f}M | {row.pretrain_device_hours:.3f} | "
            f"{row.finetune_device_hours:.3f} | {'' if row.latency_ms is None else f'{row.latency_ms:.2f}'} | "
            + " | ".join(_cell(row, reference, task) for task in tasks)
            + f" | {100 * row.mean_score:.1f}{mean_delta} |")
    lines += ["", "Findings:", *(f"- {line}" for line in findings(rows)), ""]
    storage.write_text(storage.join(out, f"{TABLE_NAME}.md"), "\n".join(lines))
    storage.write_text(storage.join(out, f"{TABLE_NAME}.csv"), _csv(rows, tasks))
    storage.write_json(storage.join(out, f"{TABLE_NAME}.json"),
                       {"reference": reference.name, "tasks": tasks, "findings": findings(rows),
                        "rows": [dataclasses.asdict(row) for row in rows]})
    _plot(rows, storage.join(out, f"{TABLE_NAME}.png"))


def _csv(rows: list[TrimRow], tasks: list[str]) -> str:
    handle = io.StringIO(newline="")  # written whole: one object write on object storage
    writer = csv.writer(handle)
    fixed = ("name", "parameters", "flops_per_token", "pretrain_device_hours", "finetune_device_hours", "latency_ms")
    writer.writerow([*fixed, *(f"{task}_{part}" for task in tasks for part in ("mean", "std", "test_accuracy")),
                     "mean_score"])
    for row in rows:
        writer.writerow([getattr(row, name) for name in fixed]
                        + [value for task in tasks
                           for value in (*row.scores[task], row.test_accuracy.get(task, ""))]
                        + [row.mean_score])
    return handle.getvalue()


def _plot(rows: list[TrimRow], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for row in rows:
        axes.scatter(row.parameters / 1e6, 100 * row.mean_score)
        axes.annotate(row.name, (row.parameters / 1e6, 100 * row.mean_score), fontsize=8,
                      xytext=(4, 4), textcoords="offset points")
    axes.set_xlabel("parameters (millions)")
    axes.set_ylabel("mean dev score over tasks (x100)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    pyplot.close(figure)
    storage.write_bytes(path, buffer.getvalue())
