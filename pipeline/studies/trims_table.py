"""The table and plot of ``trimbert study trims``: cost and accuracy of every row, against the reference.

``OUT/trims.md`` (scores and held-out MLM accuracy x100), ``trims.csv`` (unrounded), ``trims.json``
(also the findings) and ``trims.png`` (mean score over tasks against parameters). The reference row
is ``untrimmed`` when the study has one, else the first row; every task column gives the row's mean
± std over seeds and its difference from the reference. ``held-out MLM acc`` is the masked-LM
accuracy of the row's pre-training run on its data's held-out shards at the run's end (its
``summary.json``); blank for a row that did not pre-train, whose data had no held-out shards, or
whose run predates the evaluation. Findings compare each row with the reference and, when the
study has one, with ``random-init``: a difference counts when it exceeds two standard deviations
(the larger of the two rows' seed standard deviations).
"""

from __future__ import annotations

import dataclasses
import statistics

import storage
from pipeline.report import output
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
        latency_batch1_ms: CPU milliseconds per example through the SavedModel at batch 1, raw text in
            (the first task's measurement); ``None`` if not measured.
        latency_batch32_ms: the same at batch 32.
        scores: task -> (mean, std) of the dev score over seeds.
        seeds: the fewest fine-tuning seeds of any task (a std over fewer than 3 is not shown).
        test_accuracy: task -> mean labelled-test accuracy, for tasks that have one.
        heldout_mlm_loss: the pre-training run's last held-out masked-LM loss; None without one.
        heldout_mlm_accuracy: its held-out masked-LM accuracy; None without one.
    """

    name: str
    parameters: int
    flops_per_token: int
    pretrain_device_hours: float
    finetune_device_hours: float
    latency_batch1_ms: float | None
    latency_batch32_ms: float | None
    scores: dict[str, tuple[float, float]]
    test_accuracy: dict[str, float]
    seeds: int = 1
    heldout_mlm_loss: float | None = None
    heldout_mlm_accuracy: float | None = None

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
        latency_batch1_ms=first.serving_latency(1), latency_batch32_ms=first.serving_latency(32),
        scores={task: (record.metric_mean["score"], record.metric_std["score"]) for task, record in records.items()},
        test_accuracy={task: record.test_metric_mean["accuracy"] for task, record in records.items()
                       if "accuracy" in record.test_metric_mean},
        seeds=min(len(record.seeds) for record in records.values()),
        heldout_mlm_loss=summary.get("heldout_mlm_loss"), heldout_mlm_accuracy=summary.get("heldout_mlm_accuracy"))


def reference_row(rows: list[TrimRow]) -> TrimRow:
    return next((row for row in rows if row.name == UNTRIMMED), rows[0])


def beats(row: TrimRow, other: TrimRow, task: str) -> bool:
    """Whether ``row``'s mean exceeds ``other``'s by more than two standard deviations (the larger of the two)."""
    (mean, std), (other_mean, other_std) = row.scores[task], other.scores[task]
    return mean - other_mean > 2 * max(std, other_std)


def findings(rows: list[TrimRow]) -> list[str]:
    """Per row: its parameters and mean score against the reference, and whether it beats random-init
    (said only with at least :data:`output.MIN_SEEDS_FOR_SPREAD` seeds: with fewer the spread is unknown)."""
    reference = reference_row(rows)
    random_init = next((row for row in rows if row.name == RANDOM_INIT), None)
    tasks = list(reference.scores)
    lines = []
    for row in rows:
        line = (f"{row.name}: {row.parameters / reference.parameters:.0%} of the reference's parameters, "
                f"mean score {output.percent(row.mean_score)} "
                f"({output.percent_difference(row.mean_score, reference.mean_score)})")
        if random_init is not None and row is not random_init:
            seeds = min(row.seeds, random_init.seeds)
            if output.spread_known(seeds):
                won = [task for task in tasks if beats(row, random_init, task)]
                line += f"; beats random-init by > 2 std on {len(won)} of {len(tasks)} tasks"
            else:
                line += (f"; against random-init the spread is unknown with {output.seed_count(seeds)} "
                         f"(at least {output.MIN_SEEDS_FOR_SPREAD} needed)")
        lines.append(line)
    return lines


def _against(text: str, row: TrimRow, reference: TrimRow, value: float, reference_value: float) -> str:
    """``text``, then ``value - reference_value`` x100 in brackets unless ``row`` is the reference."""
    return text if row is reference else f"{text} ({output.percent_difference(value, reference_value)})"


def _cell(row: TrimRow, reference: TrimRow, task: str) -> str:
    mean, std = row.scores[task]
    return _against(output.percent(mean, std, seeds=row.seeds), row, reference, mean, reference.scores[task][0])


def write_table(rows: list[TrimRow], out: str, study) -> None:
    """Writes ``trims.{md,csv,json,png}`` into ``out`` (local folder or URL)."""
    reference = reference_row(rows)
    tasks = list(reference.scores)
    finetune = study.config.finetune
    shown = output.Table([
        output.Column("row", lambda row: row.name),
        output.Column("parameters", lambda row: row.parameters, output.thousands),
        output.Column("FLOPs/token", lambda row: row.flops_per_token, lambda flops: f"{flops / 1e6:.1f}M"),
        output.Column("pre-train device-h", lambda row: row.pretrain_device_hours, output.decimals(3)),
        output.Column("fine-tune device-h", lambda row: row.finetune_device_hours, output.decimals(3)),
        output.Column("held-out MLM acc", lambda row: row.heldout_mlm_accuracy, output.percent),
        output.Column("ms/ex b1", lambda row: row.latency_batch1_ms, output.decimals(2)),
        output.Column("ms/ex b32", lambda row: row.latency_batch32_ms, output.decimals(2)),
        *(output.Column(task, lambda row, task=task: _cell(row, reference, task)) for task in tasks),
        output.Column("mean", lambda row: _against(output.percent(row.mean_score), row, reference, row.mean_score,
                                                   reference.mean_score)),
    ], rows)
    output.write_markdown(storage.join(out, f"{TABLE_NAME}.md"), [
        f"# Trim study: {', '.join(tasks)}", "",
        f"Models: {'trimmed from ' + study.source if study.source else 'pre-trained from scratch'} "
        f"(config {study.config.name}). Fine-tuning: seq_len {finetune.seq_len}, batch {finetune.batch_size}, "
        f"epochs {finetune.epochs:g}, learning rate {finetune.learning_rate:g}, seeds {list(finetune.seeds)}. "
        f"Scores: the task's dev score x100, mean ± std over seeds, or the number of seeds below "
        f"{output.MIN_SEEDS_FOR_SPREAD} (difference from {reference.name}). "
        f"Held-out MLM acc: the pre-training run's masked-LM accuracy on its data's held-out shards x100 "
        f"(blank: not pre-trained here, or no held-out data).", "",
        *shown.markdown_lines(spaced_rule=True), "", "Findings:", *(f"- {line}" for line in findings(rows))])
    data = _data_table(rows, tasks)
    data.write_csv(storage.join(out, f"{TABLE_NAME}.csv"))
    data.write_json(storage.join(out, f"{TABLE_NAME}.json"),
                    {"reference": reference.name, "tasks": tasks, "findings": findings(rows)})
    output.scatter_plot(storage.join(out, f"{TABLE_NAME}.png"),
                        [output.Series([output.Point(row.parameters / 1e6, 100 * row.mean_score, row.name)])
                         for row in rows],
                        "parameters (millions)", "mean dev score over tasks (x100)")


def _data_table(rows: list[TrimRow], tasks: list[str]) -> output.Table:
    """The unrounded table: per task its mean, std and test accuracy in CSV; the rows as they are in JSON."""
    fixed = ("name", "parameters", "flops_per_token", "pretrain_device_hours", "finetune_device_hours",
             "heldout_mlm_loss", "heldout_mlm_accuracy", "latency_batch1_ms", "latency_batch32_ms")
    return output.Table([
        *(output.Column(name, lambda row, name=name: getattr(row, name)) for name in fixed),
        *(column for task in tasks for column in (
            output.Column(f"{task}_mean", lambda row, task=task: row.scores[task][0]),
            output.Column(f"{task}_std", lambda row, task=task: row.scores[task][1]),
            output.Column(f"{task}_test_accuracy", lambda row, task=task: row.test_accuracy.get(task)))),
        output.Column("mean_score", lambda row: row.mean_score),
    ], rows, data=dataclasses.asdict)
