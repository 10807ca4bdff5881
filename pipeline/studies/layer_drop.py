"""``trimbert study layer-drop``: every Poor Man's BERT strategy on one pre-trained model, fine-tuned.

For each number of blocks to drop (``--drop 2,4``) and each strategy of ``models.prune``,
the pre-trained encoder is pruned (``OUT/models/STRATEGY-K``, Hugging Face format) and
fine-tuned on the task like ``trimbert finetune`` (``OUT/runs/STRATEGY-K/result.json``);
the unpruned model is fine-tuned the same way (``OUT/runs/unpruned``). Strategies that
pick the same blocks share one fine-tuning run; a strategy that cannot drop K blocks
(alternate-odd/even, named in the paper's 1-based numbering, when there are fewer than K such
layers) gets a row saying why.

``OUT/layer_drop.{md,csv,json}`` hold one row per (K, strategy) beside the paper's finding
(Sajjad et al. 2022: dropping the top layers is best, the bottom layers worst).
The contribution strategy measures block similarities on the task's training sentences.

A killed study resumes: ``OUT/study.json`` records what the study fine-tunes (model, task, a user's
task's files and their sha256, finetune section), and a run whose ``result.json`` exists is read back
instead of redone. Rerunning into ``OUT`` with a different model, task, task files or finetune section
is an error.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import TYPE_CHECKING

import storage
from configs.errors import TrimbertError
from configs.schema import FinetuneConfig
from models.drop_rules import STRATEGIES
from pipeline.finetune import task_files
from pipeline.finetune.tasks import Task, task_of
from pipeline.report import output
from pipeline.studies.bookkeeping import check_study_folder, finetune_once
from pipeline.writer_lock import WriterLock

if TYPE_CHECKING:
    from pipeline.model_source import ModelSource

# Every strategy that needs only K (``indices`` needs the blocks themselves: use ``trimbert prune``).
STUDY_STRATEGIES = tuple(strategy for strategy in STRATEGIES if strategy != "indices")
SAMPLE_SENTENCES = 256  # training sentences the contribution strategy measures block similarities on
PAPER_FINDING = ("Poor Man's BERT (Sajjad et al. 2022): dropping the top layers is the best strategy "
                 "(top 4 of 12 costs at most ~2 GLUE points), dropping the bottom layers the worst.")


@dataclasses.dataclass
class StudyRow:
    """One line of the table.

    Args:
        strategy: a prune strategy, or ``unpruned``.
        drop: blocks dropped (K); 0 for the unpruned model.
        dropped: source indices of the dropped blocks.
        parameters: encoder parameters after pruning.
        score_mean: mean dev score over seeds (the task's GLUE score).
        score_std: its standard deviation over seeds.
        test_accuracy: mean labelled-test accuracy, if the task has one.
        finetune_seconds: fine-tuning wall-clock, all seeds.
        latency_batch1_ms: CPU milliseconds per example through the SavedModel at batch 1, raw text in.
        latency_batch32_ms: the same at batch 32.
        note: why a row has no result, or which row it shares its blocks with.
    """

    strategy: str
    drop: int
    dropped: tuple[int, ...] = ()
    parameters: int | None = None
    score_mean: float | None = None
    score_std: float | None = None
    test_accuracy: float | None = None
    finetune_seconds: float | None = None
    latency_batch1_ms: float | None = None
    latency_batch32_ms: float | None = None
    note: str = ""


def _row_from_record(strategy: str, drop: int, dropped: tuple[int, ...], record, note: str = "") -> StudyRow:
    return StudyRow(strategy, drop, dropped, record.parameters, record.metric_mean["score"],
                    record.metric_std["score"], record.test_metric_mean.get("accuracy"), record.finetune_seconds,
                    record.serving_latency(1), record.serving_latency(32), note)


def run_layer_drop(config, init: str | ModelSource, task: Task | str, drops: list[int], strategies: list[str],
                   out: str | pathlib.Path, options_for, log=print) -> list[StudyRow]:
    """Prunes with every strategy and K, fine-tunes each model and the unpruned one; returns the rows.

    The study holds ``OUT``'s writer lock while it runs: a second study into ``OUT`` is refused.

    Args:
        config: the config whose finetune section every run uses.
        init: the pre-trained model (any ``trimbert finetune --init`` source), as a path or opened.
        task: the task (a built-in task's name, or a :class:`Task`: a user's own).
        drops: the numbers of blocks to drop.
        strategies: prune strategies (``STUDY_STRATEGIES``).
        out: output folder (local or a URL).
        options_for: ``(init, out) -> FinetuneOptions`` (glue dir, vocabulary ... from the command line).
        log: progress printer.
    """
    with WriterLock(str(out), "study layer-drop", log):
        return _run_layer_drop(config, init, task_of(task), drops, strategies, out, options_for, log)


def _run_layer_drop(config, init: str | ModelSource, task: Task, drops: list[int], strategies: list[str],
                    out: str | pathlib.Path, options_for, log) -> list[StudyRow]:
    import models
    from models.prune import prune  # not models.prune: once imported, that name is the submodule
    from models.sample_text import encode_texts
    from pipeline.finetune import sources
    from pipeline.model_source import ModelSource

    out = str(out)
    source = ModelSource.open(init, "--init")
    files = task.user_files and task_files.signature(task.user_files)
    check_study_folder(out, {"init": storage.absolute(source.path), "task": task.name, "task_files": files,
                             "finetune": dataclasses.asdict(config.finetune)},
                       defaults={"finetune": dataclasses.asdict(FinetuneConfig()), "task_files": None})
    encoder = source.encoder()
    baseline_options = options_for(source, storage.join(out, "runs", "unpruned"))
    vocabulary, lowercase = source.vocabulary(baseline_options.vocabulary)
    sample_inputs = None
    if "contribution" in strategies:
        train = sources.load_examples(task, "train", glue_dir=baseline_options.glue_dir,
                                      tfds_data_dir=baseline_options.tfds_data_dir)
        sentences = [text for example in train[:SAMPLE_SENTENCES] for text in (example.text_a, example.text_b)
                     if text]
        sample_inputs = encode_texts(sentences, vocabulary, lowercase, config.finetune.seq_len)

    log(f"=== unpruned ({len(encoder.blocks)} blocks)")
    rows = [_row_from_record("unpruned", 0, (), finetune_once(config, baseline_options, log))]
    runs_by_blocks: dict[tuple[int, ...], StudyRow] = {}
    for drop in drops:
        for strategy in strategies:
            try:
                result = prune(encoder, strategy, drop, sample_inputs=sample_inputs)
            except TrimbertError as error:  # e.g. 3 even blocks of 6 cannot lose 4
                log(f"=== {strategy} K={drop}: not applicable ({error})")
                rows.append(StudyRow(strategy, drop, note=f"not applicable: {error}"))
                continue
            if result.dropped in runs_by_blocks:
                same = runs_by_blocks[result.dropped]
                log(f"=== {strategy} K={drop}: drops {list(result.dropped)}, as {same.strategy} did; reusing its run")
                rows.append(dataclasses.replace(same, strategy=strategy, note=f"same blocks as {same.strategy}"))
                continue
            name = f"{strategy}-{drop}"
            model_dir = storage.join(out, "models", name)
            models.save_pretrained(result.encoder, model_dir, vocabulary, lowercase)
            log(f"=== {strategy} K={drop}: drops blocks {list(result.dropped)}, "
                f"{result.parameters_after:,} of {result.parameters_before:,} parameters")
            record = finetune_once(config, options_for(model_dir, storage.join(out, "runs", name)), log)
            row = _row_from_record(strategy, drop, result.dropped, record)
            runs_by_blocks[result.dropped] = row
            rows.append(row)
    write_table(rows, out, task.name, config)
    return rows


def findings(rows: list[StudyRow]) -> list[str]:
    """Per K: which strategy scored best and worst, and whether that matches the paper."""
    lines = []
    for drop in sorted({row.drop for row in rows if row.drop}):
        scored = [row for row in rows if row.drop == drop and row.score_mean is not None]
        if not scored:
            continue
        best = max(scored, key=lambda row: row.score_mean)
        worst = min(scored, key=lambda row: row.score_mean)
        top = next((row for row in scored if row.strategy == "top"), None)
        bottom = next((row for row in scored if row.strategy == "bottom"), None)
        agrees_top = top is not None and top.score_mean >= best.score_mean
        agrees_bottom = bottom is not None and bottom.score_mean <= worst.score_mean
        lines.append(f"K={drop}: best {best.strategy} ({output.percent(best.score_mean)}), worst {worst.strategy} "
                     f"({output.percent(worst.score_mean)}); top best: {'yes' if agrees_top else 'no'}, "
                     f"bottom worst: {'yes' if agrees_bottom else 'no'}")
    return lines


COLUMNS = ("strategy", "drop", "dropped", "parameters", "score_mean", "score_std", "test_accuracy",
           "finetune_seconds", "latency_batch1_ms", "latency_batch32_ms", "note")


def write_table(rows: list[StudyRow], out: str | pathlib.Path, task_name: str, config) -> None:
    """``layer_drop.md`` (scores x100), ``layer_drop.csv`` (unrounded) and ``layer_drop.json``."""
    out = storage.makedirs(str(out))
    baseline = rows[0].score_mean
    finetune = config.finetune
    shown = output.Table([
        output.Column("strategy", lambda row: row.strategy),
        output.Column("K", lambda row: row.drop),
        output.Column("dropped blocks", lambda row: ",".join(map(str, row.dropped)) or "-"),
        output.Column("parameters", lambda row: row.parameters, output.thousands),
        output.Column("dev score", lambda row: output.percent(row.score_mean, row.score_std or 0.0,
                                                              seeds=len(finetune.seeds))),
        output.Column("Δ vs unpruned", lambda row: "" if row.score_mean is None or not row.drop
                      else output.percent_difference(row.score_mean, baseline)),
        output.Column("test acc.", lambda row: row.test_accuracy, output.percent),
        output.Column("fine-tune s", lambda row: row.finetune_seconds, output.decimals(0)),
        output.Column("ms/ex b1", lambda row: row.latency_batch1_ms, output.decimals(2)),
        output.Column("ms/ex b32", lambda row: row.latency_batch32_ms, output.decimals(2)),
        output.Column("note", lambda row: row.note),
    ], rows)
    output.write_markdown(storage.join(out, "layer_drop.md"), [
        f"# Layer-drop study: {task_name}", "",
        f"Fine-tuning: seq_len {finetune.seq_len}, batch {finetune.batch_size}, epochs {finetune.epochs:g}, "
        f"learning rate {finetune.learning_rate:g}, seeds {list(finetune.seeds)}, training examples "
        f"{finetune.max_train_examples or 'all'}. Score: the task's dev score x100, mean ± std over seeds "
        f"(the number of seeds instead of a std below {output.MIN_SEEDS_FOR_SPREAD}).", "",
        *shown.markdown_lines(spaced_rule=True),
        "", f"Paper: {PAPER_FINDING}", "", "Here:", *(f"- {line}" for line in findings(rows))])
    data = output.Table([_data_column(name) for name in COLUMNS], rows, data=dataclasses.asdict)
    data.write_csv(storage.join(out, "layer_drop.csv"))
    data.write_json(storage.join(out, "layer_drop.json"),
                    {"task": task_name, "finetune": dataclasses.asdict(finetune), "paper": PAPER_FINDING,
                     "findings": findings(rows)})


def _data_column(name: str) -> output.Column:
    """A CSV column: the row's field, unrounded; the dropped blocks as ``4 5``."""
    if name == "dropped":
        return output.Column(name, lambda row: " ".join(map(str, row.dropped)))
    return output.Column(name, lambda row: getattr(row, name))
