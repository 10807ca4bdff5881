"""Runs a sub-architecture search: measures, trains proxies, writes the table, plot and chosen config.

    OUT/
      journal.jsonl       costs and per-rung proxy errors, written as each finishes (resume reads it)
      candidates/NAME/    each candidate's proxy pre-training directory (resumed across rungs)
      results.csv, results.md   every candidate ranked: finalists by score first
      pareto.png          parameters vs proxy error, finalists' Pareto front marked
      best_config.yaml    the best finalist on the base config's schedule, for ``trimbert pretrain --config``

The objective and the approximation scheme are documented in ``pipeline.studies.search_algorithm``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable

import storage
from configs import schema as config_lib
from configs.errors import TrimbertError
from configs.schema import Config
from models import params
from pipeline import model_dir as model_dir_lib
from pipeline.clock import median_call_seconds
from pipeline.report import output
from pipeline.studies import search_algorithm
from pipeline.studies.search_space import Candidate, SearchSpace, candidate_config
from pipeline.writer_lock import WriterLock

# Proxy loss = mean loss over this many last steps of a rung: single steps are noisy.
LOSS_WINDOW = 5

TABLE_COLUMNS = ("rank", "name", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "embedding_dim",
                 "parameters", "flops_per_token", "latency_ms", "rung", "steps", "proxy_loss", "score",
                 "score_lower_bound", "pareto", "dropped")


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """Where the search reads and writes.

    Args:
        teacher: a trimbert model directory, or a Hugging Face folder or keras-hub preset with a
            masked-LM head (``pipeline.pretrain.starting_points``), to distil from.
        data_dir: a ``trimbert preprocess`` folder written at the space's ``proxy.seq_len``.
        out_dir: journal, candidates, tables, plot and chosen config.
        budget_steps: total proxy steps for the whole search; ``None`` keeps the space's rungs.
    """

    teacher: str
    data_dir: str
    out_dir: str
    budget_steps: int | None = None


def measure_latency(config: Config, batch_size: int, seq_len: int, repeats: int) -> float:
    """Median seconds of one encoder forward pass on the current device (random weights).

    Args:
        config: the encoder to build.
        batch_size: sequences per batch.
        seq_len: tokens per sequence.
        repeats: timed passes after one untimed warm-up (which also traces the graph).
    """
    import keras
    import tensorflow as tf

    import models

    keras.backend.clear_session()  # many candidates: drop the previous graphs and weights
    encoder = models.build_encoder(config)
    inputs = {"token_ids": tf.zeros([batch_size, seq_len], tf.int32),
              "segment_ids": tf.zeros([batch_size, seq_len], tf.int32),
              "padding_mask": tf.ones([batch_size, seq_len], tf.int32)}
    forward = tf.function(lambda batch: encoder(batch, training=False))
    return median_call_seconds(lambda: tf.nest.map_structure(lambda tensor: tensor.numpy(), forward(inputs)),
                               repeats, warm_up=1)


def proxy_error(config: Config, data_dir: str, model_dir: str, steps: int, previous_steps: int) -> float:
    """Trains (or continues) a candidate's proxy to ``steps`` and returns its recent mean loss.

    Args:
        config: the candidate's proxy config (one phase of the final rung's length).
        data_dir: the pre-training data folder.
        model_dir: the candidate's model directory; an earlier rung's checkpoint is continued.
        steps: the global step to train to.
        previous_steps: the step this rung started from (the loss window stays within the rung).
    """
    from pipeline.pretrain import loop as pretrain

    pretrain.run(config, pretrain.RunOptions(data_dirs=(data_dir,), model_dir=str(model_dir), max_steps=steps),
                 log=lambda line: None)
    records = [json.loads(line)
               for line in storage.read_text(storage.join(model_dir, model_dir_lib.METRICS_FILE)).splitlines()]
    # Training rows only: held-out evaluation rows (data with held-out shards) have no "loss".
    losses = [r["loss"] for r in records if "loss" in r and previous_steps < r["step"] <= steps][-LOSS_WINDOW:]
    if not losses:
        raise TrimbertError(f"{model_dir}: no loss logged between steps {previous_steps} and {steps}")
    return float(sum(losses) / len(losses))


def run(space: SearchSpace, options: SearchOptions, log: Callable[[str], None] = print) -> dict:
    """The whole search; returns the best finalist's row and the output paths.

    Args:
        space: a loaded search space.
        options: teacher, data and output folders, optional step budget.
        log: progress lines.

    The search holds its output folder's writer lock while it runs: a second search into it is refused.
    """
    from beam_jobs.manifest import Manifest

    # Every candidate trains on this data: refuse too little of it before measuring (or writing) anything.
    Manifest.read(options.data_dir).check_enough_examples(space.proxy.batch_size, "the space's proxy")
    with WriterLock(str(options.out_dir), "search", log):
        return _run(space, options, log)


def _run(space: SearchSpace, options: SearchOptions, log: Callable[[str], None]) -> dict:
    out_dir = storage.makedirs(str(options.out_dir))
    teacher_config = _teacher_config(options.teacher)
    candidates, dropped = space.candidates()
    log(f"search: {len(candidates)} candidates from {space.path} "
        f"({dropped} dropped: hidden_dim not divisible by num_heads)")
    proxy = space.proxy
    rung_steps = proxy.rung_steps
    if options.budget_steps is not None:
        rung_steps = search_algorithm.budgeted_rung_steps(rung_steps, len(candidates), proxy.keep_fraction,
                                                options.budget_steps)
    log(f"search: rungs at steps {list(rung_steps)}, keep {proxy.keep_fraction:.0%} per rung")
    journal = search_algorithm.Journal(storage.join(out_dir, "journal.jsonl"))
    by_name = {c.name: c for c in candidates}
    proxy_configs = {c.name: candidate_config(space, c, options.teacher, rung_steps[-1]) for c in candidates}

    # === Known terms: parameters, operations and latency, before any training ===
    def latency(config: Config) -> float:
        return measure_latency(config, proxy.latency_batch_size, proxy.latency_seq_len, proxy.latency_repeats)

    teacher_costs = journal.costs("teacher")
    if teacher_costs is None:
        teacher_costs = {"kind": "cost", "name": "teacher", **_costs(teacher_config, proxy.latency_seq_len),
                         "latency_seconds": latency(teacher_config)}
        journal.append(teacher_costs)
    costs = {}
    for index, candidate in enumerate(candidates):
        known = journal.costs(candidate.name)
        if known is None:
            config = proxy_configs[candidate.name]
            known = {"kind": "cost", "name": candidate.name, **_costs(config, proxy.latency_seq_len),
                     "latency_seconds": latency(config)}
            journal.append(known)
            log(f"search: measured {candidate.name} [{index + 1}/{len(candidates)}]: "
                f"{known['parameters']:,} parameters, {known['latency_seconds'] * 1000:.2f} ms")
        costs[candidate.name] = known
    reference = search_algorithm.Reference(teacher_costs["parameters"], teacher_costs["latency_seconds"],
                                 math.log(teacher_config.model.vocabulary_size))
    weights = space.objective

    def score(name: str, error: float) -> float:
        return search_algorithm.objective(costs[name]["parameters"], costs[name]["latency_seconds"], error,
                                          reference, weights)

    # === Successive halving on the proxy error ===
    def train(name: str, rung: int, steps: int) -> float:
        previous = rung_steps[rung - 1] if rung else 0
        return proxy_error(proxy_configs[name], options.data_dir, storage.join(out_dir, "candidates", name), steps,
                           previous)

    outcomes = search_algorithm.successive_halving([c.name for c in candidates], score, rung_steps, proxy.keep_fraction,
                                         proxy.error_floor, train, journal, log)

    # === Outputs ===
    rows = _ranked_rows(by_name, costs, outcomes, rung_steps, score, proxy.error_floor)
    _write_tables(rows, out_dir)
    _plot(rows, storage.join(out_dir, "pareto.png"))
    best = rows[0]
    best_config = candidate_config(space, by_name[best["name"]], options.teacher, proxy_steps=None)
    storage.write_text(
        storage.join(out_dir, "best_config.yaml"),
        f"# Chosen by `trimbert search` over {space.path} (score {best['score']}); "
        f"pre-train it with `trimbert pretrain --config`.\n" + config_lib.dump(best_config))
    log(f"search: best {best['name']} ({best['parameters']:,} parameters, {best['latency_ms']} ms, "
        f"proxy loss {best['proxy_loss']}); config in {storage.join(out_dir, 'best_config.yaml')}")
    return {"best": best, "table": storage.join(out_dir, "results.md"), "plot": storage.join(out_dir, "pareto.png"),
            "config": storage.join(out_dir, "best_config.yaml")}


def _teacher_config(teacher: str) -> Config:
    """The teacher's config, refusing one that cannot give logits before anything is measured."""
    from pipeline.model_source import ModelSource
    from pipeline.pretrain import starting_points

    try:
        source = ModelSource.open(teacher)
        if not source.from_pretraining:
            starting_points.teacher_tensors(source)  # refuses a folder without a masked-LM head
        return source.config
    except TrimbertError as error:
        raise TrimbertError(f"--teacher: {error}") from error


def _costs(config: Config, seq_len: int) -> dict:
    return {"parameters": params.count_parameters(config).total,
            "flops_per_token": params.flops_per_token(config, seq_len)}


def _ranked_rows(by_name: dict[str, Candidate], costs: dict, outcomes: dict[str, search_algorithm.Outcome],
                 rung_steps, score, error_floor: float) -> list[dict]:
    final = len(rung_steps) - 1
    finalists = [name for name, o in outcomes.items() if o.dropped_at is None]
    front = {finalists[i] for i in search_algorithm.pareto_front(
        [(costs[n]["parameters"], costs[n]["latency_seconds"], outcomes[n].error) for n in finalists])}
    rows = []
    for name, outcome in outcomes.items():
        candidate, known = by_name[name], costs[name]
        trained = outcome.error is not None
        rows.append({
            **{field: getattr(candidate, field) for field in
               ("num_layers", "num_heads", "hidden_dim", "intermediate_dim", "embedding_dim")},
            "name": name, "parameters": known["parameters"], "flops_per_token": known["flops_per_token"],
            "latency_ms": round(known["latency_seconds"] * 1000, 3),
            "rung": outcome.rung, "steps": rung_steps[outcome.rung] if trained else 0,
            "proxy_loss": round(outcome.error, 4) if trained else None,
            "score": round(score(name, outcome.error), 4) if trained else None,
            "score_lower_bound": round(score(name, error_floor), 4),
            "pareto": name in front,
            "dropped": "" if outcome.dropped_at is None else f"rung {outcome.dropped_at} ({outcome.dropped_by})"})
    # Finalists first (compared at the same steps), then by how far each got, then by score.
    rows.sort(key=lambda r: (-(r["rung"] == final and not r["dropped"]), -r["rung"],
                             r["score"] if r["score"] is not None else r["score_lower_bound"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _write_tables(rows: list[dict], out_dir: str) -> None:
    table = output.Table([output.Column(column, lambda row, column=column: row[column],
                                        output.thousands if column == "parameters" else output.plain)
                          for column in TABLE_COLUMNS], rows)
    table.write_csv(storage.join(out_dir, "results.csv"))
    output.write_markdown(storage.join(out_dir, "results.md"), table.markdown_lines())


def _plot(rows: list[dict], path: str) -> None:
    trained = [row for row in rows if row["proxy_loss"] is not None]
    front = sorted((row for row in trained if row["pareto"]), key=lambda row: row["parameters"])
    output.scatter_plot(path, [
        output.Series([output.Point(row["parameters"] / 1e6, row["proxy_loss"], shade=row["latency_ms"])
                       for row in trained], size=40, shade_label="latency (ms)"),
        output.Series([output.Point(row["parameters"] / 1e6, row["proxy_loss"], row["name"], hollow=True)
                       for row in front], name="Pareto front (finalists)", color="tab:red", size=121, joined=True),
    ], "parameters (millions)", "proxy distillation loss (at the last rung reached)", "Sub-architecture search")
