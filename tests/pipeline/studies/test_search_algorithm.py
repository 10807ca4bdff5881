"""Search space constraints, the objective, the Pareto front, successive halving and resume (no TensorFlow)."""

import json

import pytest

from configs.schema import ConfigError
from pipeline.studies import search_algorithm
from pipeline.studies.search_space import Candidate, candidate_config, load_space

# Hand-worked case: reference scales 1, weights 1, so score = parameters + latency + error.
# name: (parameters, latency, error at rung 0, error at rung 1)
SYNTHETIC = {"a": (0.1, 0.1, 0.9, 0.8), "b": (0.2, 0.2, 0.3, 0.2), "c": (0.4, 0.3, 0.2, 0.1),
             "d": (0.9, 0.9, 0.1, 0.05)}
UNIT = search_algorithm.Reference(parameters=1.0, latency_seconds=1.0, error_scale=1.0)


def synthetic_score(name, error):
    parameters, latency, _, _ = SYNTHETIC[name]
    return search_algorithm.objective(parameters, latency, error, UNIT, search_algorithm.ObjectiveWeights())


class CountingTrainer:
    """Returns the synthetic error of (name, rung); optionally interrupts on the Nth call."""

    def __init__(self, interrupt_on_call=None):
        self.calls = []
        self.interrupt_on_call = interrupt_on_call

    def __call__(self, name, rung, steps):
        if len(self.calls) + 1 == self.interrupt_on_call:
            raise KeyboardInterrupt
        self.calls.append((name, rung))
        return SYNTHETIC[name][2 + rung]


def halving(journal, trainer):
    return search_algorithm.successive_halving(list(SYNTHETIC), synthetic_score, rung_steps=(1, 2), keep_fraction=0.5,
                                     error_floor=0.0, train=trainer, journal=journal, log=lambda line: None)


def test_shipped_spaces_drop_combinations_that_break_the_head_constraint():
    bort = load_space("bort_space")
    candidates, dropped = bort.candidates()
    # 6 x 4 x 3 x 5 = 360; (H=512, A=12) and (H=1024, A=12) x 6 depths x 5 FFN widths = 60 dropped.
    assert (len(candidates), dropped) == (300, 60)
    assert all(c.hidden_dim % c.num_heads == 0 for c in candidates)
    assert Candidate(4, 8, 1024, 768) in candidates  # Bort's released shape is in its own space
    tiny_candidates, tiny_dropped = load_space("tiny_space").candidates()
    assert (len(tiny_candidates), tiny_dropped) == (6, 2)
    assert {c.name for c in tiny_candidates if c.num_heads == 3} == {"d1-a3-h48-i64", "d2-a3-h48-i64"}


@pytest.mark.parametrize("text, message", [
    ("base: tiny\nnum_layers: [1]\nnum_heads: [2]\nhidden_dim: [32, x]\nintermediate_dim: [64]\n",
     "'hidden_dim' values must be integers >= 1, got 'x'"),
    ("base: tiny\nnum_layers: [1]\nnum_heads: [2]\nhidden_dim: [32]\n", "missing field 'intermediate_dim'"),
    ("base: tiny\nnum_layers: [1]\nnum_heads: [2]\nhidden_dim: [32]\nintermediate_dim: [64]\nwidth: [3]\n",
     "unknown field 'width'"),
    ("base: tiny\nnum_layers: [1]\nnum_heads: [3]\nhidden_dim: [32]\nintermediate_dim: [64]\n",
     "no combination satisfies hidden_dim % num_heads == 0"),
    ("base: tiny\nnum_layers: [1]\nnum_heads: [2]\nhidden_dim: [32]\nintermediate_dim: [64]\n"
     "proxy: {rung_steps: [4, 4]}\n", "'proxy.rung_steps' must be positive and strictly increasing"),
    ("base: tiny\nnum_layers: [1]\nnum_heads: [2]\nhidden_dim: [32]\nintermediate_dim: [64]\n"
     "proxy: {keep: 0.5}\n", "unknown field 'proxy.keep'"),
    ("base: no_such_config\nnum_layers: [1]\nnum_heads: [2]\nhidden_dim: [32]\nintermediate_dim: [64]\n",
     "config file not found: no_such_config"),
])
def test_invalid_space_files_name_the_field_and_the_file(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_space(path)
    assert message in str(error.value)
    assert "no_such_config" in message or str(path) in str(error.value)


def test_candidate_config_sets_dimensions_teacher_and_one_proxy_phase():
    space = load_space("tiny_space")
    config = candidate_config(space, Candidate(2, 3, 48, 64), teacher="/teachers/t", proxy_steps=4)
    assert (config.model.num_layers, config.model.num_heads, config.model.hidden_dim,
            config.model.intermediate_dim) == (2, 3, 48, 64)
    assert config.pretrain.distill.teacher == "/teachers/t"
    assert [(p.steps, p.seq_len, p.batch_size) for p in config.pretrain.phases] == [(4, 64, 8)]
    assert config.pretrain.learning_rate == pytest.approx(1e-3)
    # Without proxy steps the base's schedule is kept (the config handed to `trimbert pretrain`).
    assert candidate_config(space, Candidate(2, 3, 48, 64), "/t", None).pretrain.phases[0].steps == 1000


def test_pareto_front_on_a_hand_worked_set():
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 3), (5, 5)]
    # (3, 4) is dominated by (2, 3); (5, 5) by everything; the duplicate (2, 3)s do not dominate each other.
    assert search_algorithm.pareto_front(points) == [0, 1, 3, 4]
    assert search_algorithm.pareto_front([(1, 1, 1)]) == [0]


def test_objective_is_the_weighted_sum_of_normalised_terms():
    reference = search_algorithm.Reference(parameters=100.0, latency_seconds=0.5, error_scale=10.0)
    weights = search_algorithm.ObjectiveWeights(parameters=2.0, latency=1.0, error=3.0)
    value = search_algorithm.objective(50, 0.25, 2.0, reference, weights)
    assert value == pytest.approx(2.0 * 0.5 + 1.0 * 0.5 + 3.0 * 0.2)


def test_successive_halving_ranks_and_drops_as_worked_by_hand(tmp_path):
    # Rung 0 (keep 2 of 4), trained in optimistic order a .2, b .4, c .7, d 1.8:
    #   a 1.1, b 0.7, c 0.9; d's best possible 1.8 is beaten by 3 >= 2 -> dropped untrained.
    #   cut: b, c promoted; a dropped.  Rung 1 (final, all trained): b 0.6, c 0.8.
    trainer = CountingTrainer()
    outcomes = halving(search_algorithm.Journal(tmp_path / "journal.jsonl"), trainer)
    assert trainer.calls == [("a", 0), ("b", 0), ("c", 0), ("b", 1), ("c", 1)]
    assert (outcomes["d"].dropped_at, outcomes["d"].dropped_by, outcomes["d"].error) == (0, "bound", None)
    assert (outcomes["a"].dropped_at, outcomes["a"].dropped_by, outcomes["a"].rung) == (0, "cut", 0)
    assert [(outcomes[n].dropped_at, outcomes[n].rung, outcomes[n].error) for n in "bc"] == [
        (None, 1, 0.2), (None, 1, 0.1)]
    assert synthetic_score("b", outcomes["b"].error) == pytest.approx(0.6)
    assert synthetic_score("c", outcomes["c"].error) == pytest.approx(0.8)


def test_an_interrupted_search_resumes_without_retraining(tmp_path):
    journal_path = tmp_path / "journal.jsonl"
    with pytest.raises(KeyboardInterrupt):
        halving(search_algorithm.Journal(journal_path), CountingTrainer(interrupt_on_call=3))
    records = [json.loads(line) for line in journal_path.read_text().splitlines()]
    assert [(r["name"], r["rung"]) for r in records] == [("a", 0), ("b", 0)]
    resumed = CountingTrainer()
    outcomes = halving(search_algorithm.Journal(journal_path), resumed)
    assert resumed.calls == [("c", 0), ("b", 1), ("c", 1)]  # a and b at rung 0 came from the journal
    assert {n for n, o in outcomes.items() if o.dropped_at is None} == {"b", "c"}
    assert len(search_algorithm.Journal(journal_path).records) == 5
    assert not (tmp_path / "journal.jsonl.tmp").exists()


def test_budget_scales_the_rungs_to_the_worst_case_total():
    # 4 candidates, rungs (1, 2), keep half: worst case 4 x 1 + 2 x 1 = 6 steps; a budget of 12 doubles it.
    assert search_algorithm.budgeted_rung_steps((1, 2), 4, 0.5, 12) == (2, 4)
    # A tiny budget still leaves strictly increasing rungs of at least one step.
    assert search_algorithm.budgeted_rung_steps((10, 20, 40), 100, 0.5, 3) == (1, 2, 3)
