"""The model card (``README.md``) of a kept fine-tuned classifier or of an exported encoder.

The card follows the Hugging Face model-card convention: a YAML front matter block between two
``---`` lines, then Markdown. The header holds ``library_name: keras``, ``pipeline_tag``
(``text-classification`` for classes and for a regression score alike, as the Hub tags
sequence-classification models with ``problem_type: regression``; ``feature-extraction`` for an
encoder), ``tags``, ``base_model``, ``datasets`` (GLUE tasks), ``metrics`` (the Hub's metric ids)
and a ``model-index`` with the kept seed's dev (and labelled test) results, as fractions exactly as
the result record holds them.

The card is rendered from data only: the config (its ``model`` and ``trim`` sections describe the
encoder, its ``finetune`` section the recipe), the task and the result record when there is one, and
latencies a caller measured. Without a task and record it is an encoder's card. The text shows
percentages through :func:`pipeline.report.output.percent` (a spread only over 3 or more seeds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import yaml

from configs.schema import Config, TrimConfig
from models import params
from pipeline.evaluation.record import ResultRecord
from pipeline.finetune.tasks import Task
from pipeline.report import output

FILENAME = "README.md"
# Our metric names -> the Hugging Face Hub's metric ids.
HUB_METRICS = {"accuracy": "accuracy", "f1": "f1", "matthews": "matthews_correlation", "pearson": "pearsonr",
               "spearman": "spearmanr"}
GLUE_DATASET = "nyu-mll/glue"
NORMALIZERS = {"relu": "ReLU(s)/n", "relu_sum": "ReLU(s)/(sum ReLU(s) + eps)", "sigmoid": "sigmoid(s - log n)"}


@dataclasses.dataclass(frozen=True)
class Latency:
    """One measured inference latency.

    Args:
        runtime: what ran the model, e.g. ``Keras`` or ``SavedModel``.
        device: where, e.g. ``CPU``.
        batch_size: rows per call.
        seq_len: tokens per row (every row padded to it).
        ms_per_example: milliseconds per row.
    """

    runtime: str
    device: str
    batch_size: int
    seq_len: int
    ms_per_example: float


def trim_changes(trim: TrimConfig, num_layers: int) -> list[tuple[str, str]]:
    """(tag, sentence) for each trim that differs from the untrimmed encoder, in the config's field order.

    Block numbers are the source encoder's, 0-based (``TrimConfig``).
    """
    kept = trim.kept_blocks(num_layers)
    changes = []

    def removed(field: str, blocks: Sequence[int]) -> list[int]:
        return [block for block in blocks if not trim.keeps(field, block)]

    no_ffn = removed("ffn_blocks", kept)
    if no_ffn:
        changes.append(("no-ffn", f"feed-forward sub-layer removed from blocks {_blocks(no_ffn)}"))
    no_attention_ln = removed("attention_layernorm_blocks", kept)
    if no_attention_ln:
        changes.append(("fewer-layernorms",
                        f"post-attention layernorm removed from blocks {_blocks(no_attention_ln)}"))
    no_ffn_ln = removed("ffn_layernorm_blocks", [block for block in kept if block not in no_ffn])
    if no_ffn_ln:
        changes.append(("fewer-layernorms", f"post-feed-forward layernorm removed from blocks {_blocks(no_ffn_ln)}"))
    if trim.attention_normalizer != "softmax":
        changes.append((f"attention-{trim.attention_normalizer}".replace("_", "-"),
                        f"attention softmax replaced by {trim.attention_normalizer} "
                        f"({NORMALIZERS[trim.attention_normalizer]}, n = unmasked keys)"))
    if trim.drop_layers:
        changes.append(("layer-drop", f"blocks {_blocks(sorted(trim.drop_layers))} of {num_layers} dropped whole "
                                      f"(Poor Man's BERT)"))
    return changes


def _blocks(blocks: Sequence[int]) -> str:
    return ", ".join(str(block) for block in blocks)


def header(config: Config, task: Task | None = None, record: ResultRecord | None = None,
           base_model: str | None = None) -> dict[str, Any]:
    """The front matter as data (what :func:`render` dumps as YAML)."""
    tags = ["trimbert", "bert"]
    for tag, _ in trim_changes(config.trim, config.model.num_layers):
        if tag not in tags:
            tags.append(tag)
    fields: dict[str, Any] = {"library_name": "keras"}
    if task is None:
        fields["pipeline_tag"] = "feature-extraction"
    else:
        fields["pipeline_tag"] = "text-classification"
        tags += ["regression"] if task.is_regression else []
        tags.append(task.name)
    fields["tags"] = tags
    if base_model:
        fields["base_model"] = base_model
    if task is not None and task.is_glue:
        fields["datasets"] = [GLUE_DATASET]
    if task is not None and record is not None:
        fields["metrics"] = [HUB_METRICS.get(metric, metric) for metric in task.metrics.metrics]
        fields["model-index"] = [{"name": _title(config, task), "results": _results(task, record)}]
    return fields


def _results(task: Task, record: ResultRecord) -> list[dict[str, Any]]:
    """One model-index result per dev split (and the labelled test split): the kept seed's metrics."""
    best = record.best
    splits = [(split, suffix, best.dev_metrics) for split, suffix in task.metrics.splits]
    if best.test_metrics:
        splits.append(("test", "", best.test_metrics))
    results = []
    for split, suffix, values in splits:
        names = [f"{metric}_{suffix}" if suffix else metric for metric in task.metrics.metrics]
        dataset = ({"name": f"GLUE {task.display_name}", "type": GLUE_DATASET, "config": task.name, "split": split}
                   if task.is_glue else {"name": task.display_name, "type": task.name, "split": split})
        results.append({
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": dataset,
            "metrics": [{"type": HUB_METRICS.get(metric, metric), "value": values[name], "name": name}
                        for metric, name in zip(task.metrics.metrics, names, strict=True) if name in values]})
    return results


def _title(config: Config, task: Task | None) -> str:
    return config.name if task is None else f"{config.name} fine-tuned on {task.display_name}"


def render(config: Config, seq_len: int, task: Task | None = None, record: ResultRecord | None = None,
           base_model: str | None = None, latencies: Sequence[Latency] = (),
           pretrain_accelerator_hours: float | None = None) -> str:
    """The whole card: YAML front matter, then Markdown.

    Args:
        config: the model's config: ``model`` and ``trim`` describe the encoder; with a task its
            ``finetune`` section is the recipe.
        seq_len: the sequence length the model reads (FLOPs per token are given at it).
        task: the fine-tuning task; ``None`` for an encoder's card.
        record: the fine-tuning result (scores, seeds, device-hours); ``None`` for an encoder.
        base_model: the pre-trained model fine-tuned (the ``--init`` path), or the encoder's source.
        latencies: measured inference latencies to list.
        pretrain_accelerator_hours: for an encoder's card; a record's own value takes precedence.
    """
    front = yaml.safe_dump(header(config, task, record, base_model), sort_keys=False, allow_unicode=True)
    lines = ["---", front.rstrip("\n"), "---", "", f"# {_title(config, task)}", ""]
    if task is None:
        lines += ["A pre-trained BERT encoder (no task head) written by trimbert.", ""]
    else:
        kind = "a regression score" if task.is_regression else f"{task.num_labels} classes"
        lines += [f"A BERT classifier for {task.display_name} ({kind}) fine-tuned by trimbert: the "
                  f"best-on-dev seed of the run.", ""]
    lines += _encoder_section(config, seq_len, base_model)
    if task is not None:
        lines += _task_section(task, config)
    if record is not None:
        lines += _scores_section(task, record)
    hours = record.pretrain_accelerator_hours if record is not None else pretrain_accelerator_hours
    lines += _cost_section(record, hours, latencies)
    lines += _usage_section(task)
    return "\n".join(lines).rstrip("\n") + "\n"


def _encoder_section(config: Config, seq_len: int, base_model: str | None) -> list[str]:
    model = config.model
    kept = len(config.trim.kept_blocks(model.num_layers))
    changes = trim_changes(config.trim, model.num_layers)
    flops = params.flops_per_token(config, seq_len)
    lines = ["## Encoder", "",
             f"- config: `{config.name}`" + (f", from `{base_model}`" if base_model else ""),
             f"- {kept} block(s), width {model.hidden_dim}, {model.num_heads} heads, feed-forward width "
             f"{model.intermediate_dim}, vocabulary {model.vocabulary_size:,}, "
             f"{model.max_sequence_length} positions",
             f"- encoder parameters (pooler included): {output.thousands(params.count_parameters(config).total)}",
             f"- forward FLOPs per token at length {seq_len}: {output.thousands(flops)}"
             f" (matrix multiplies, `models.params.flops_per_token`)",
             "- trims: " + ("none in this architecture (layers dropped before it was saved, as `trimbert prune` "
                            "does, leave a plain shallower encoder)" if not changes else "")]
    lines += [f"  - {sentence}" for _, sentence in changes]
    return lines + [""]


def _task_section(task: Task, config: Config) -> list[str]:
    recipe = config.finetune
    if task.is_regression:
        outputs = "one score (the regression head's output)"
    else:
        outputs = "classes in output order: " + ", ".join(f"{index} `{name}`" for index, name in
                                                          enumerate(task.label_names))
    return ["## Task", "",
            f"- task: `{task.name}`; text column(s): " + ", ".join(f"`{name}`" for name in task.text_features),
            f"- {outputs}",
            f"- fine-tuning: {recipe.epochs:g} epoch(s), batch {recipe.batch_size}, peak learning rate "
            f"{recipe.learning_rate:g}, sequence length {recipe.seq_len}, `{recipe.pooling}` pooling", ""]


def _scores_section(task: Task | None, record: ResultRecord) -> list[str]:
    seeds = len(record.seeds)
    best = record.best
    lines = ["## Scores", "",
             f"Seeds {', '.join(str(seed) for seed in record.seeds)}; this model is seed {record.best_seed}, "
             f"the best on dev by `score`, the task's single score (the mean of "
             f"{', '.join(task.metrics.score) if task is not None else 'its metrics'} over its dev splits). Percent; "
             f"the mean over seeds shows a ± standard deviation only over 3 or more seeds.", "",
             f"| split | metric | this model (seed {record.best_seed}) | mean over {output.seed_count(seeds)} |",
             "|---|---|---|---|"]
    for name, mean in record.metric_mean.items():
        lines.append(f"| dev | {name} | {output.percent(best.dev_metrics.get(name))} | "
                     f"{output.percent(mean, record.metric_std.get(name), seeds=seeds)} |")
    for name, mean in record.test_metric_mean.items():
        lines.append(f"| test | {name} | {output.percent(best.test_metrics.get(name))} | "
                     f"{output.percent(mean, record.test_metric_std.get(name), seeds=seeds)} |")
    return lines + [""]


def _cost_section(record: ResultRecord | None, pretrain_hours: float | None,
                  latencies: Sequence[Latency]) -> list[str]:
    lines = ["## Cost", "",
             "- pre-training: " + (f"{pretrain_hours:.4g} accelerator-hours" if pretrain_hours is not None
                                   else "unknown (no pre-training summary.json beside the base model)")]
    if record is not None:
        devices = (f" on {record.finetune_device_count} x {record.finetune_device_kind}"
                   if record.finetune_device_kind else "")
        lines.append(f"- fine-tuning, all {output.seed_count(len(record.seeds))}: "
                     f"{record.finetune_accelerator_hours:.4g} device-hours{devices} "
                     f"({record.finetune_seconds:.1f} s wall-clock)")
    if latencies:
        lines += ["", "| runtime | device | batch | length | ms per example |", "|---|---|---|---|---|"]
        lines += [f"| {latency.runtime} | {latency.device} | {latency.batch_size} | {latency.seq_len} | "
                  f"{latency.ms_per_example:.3f} |" for latency in latencies]
    else:
        lines.append("- inference latency: not measured")
    return lines + [""]


def _usage_section(task: Task | None) -> list[str]:
    if task is None:
        return ["## Use", "", "```", "trimbert finetune --init FOLDER --task TASK --out OUT", "```", "",
                "In keras-hub (standard BERT shapes only): `keras_hub.models.BertBackbone.from_preset(FOLDER)`."]
    columns = " ".join(f"--text-column {name}" for name in task.text_features)
    written = "`score`" if task.is_regression else "`label` and one `probability_<class>` per class"
    return ["## Use", "",
            f"Predict on a CSV, TSV, JSON Lines or Parquet file with the column(s) "
            f"{', '.join(f'`{name}`' for name in task.text_features)} (or name yours with `--text-column`); "
            f"each output row holds {written}:", "",
            "```",
            "trimbert predict --model FOLDER --input texts.csv --out predictions.csv",
            f"trimbert predict --model FOLDER --input texts.jsonl --out predictions.jsonl {columns}",
            "```", "",
            "Serve it with TF Serving: a SavedModel whose `serving_default` signature takes raw text "
            "(`text`" + (", `text_pair`" if task.is_pair else "") + "):", "",
            "```",
            "trimbert export --model FOLDER --format saved_model --out SERVING_FOLDER   # writes SERVING_FOLDER/1/",
            "```"]
