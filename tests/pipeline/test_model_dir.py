"""What a resume compares against the recorded run (``pipeline.model_dir.run_changes``)."""

from __future__ import annotations

from pipeline.model_dir import run_changes


def _run(data=("data",), **pretrain) -> dict:
    return {"config": {"pretrain": pretrain}, "data": list(data), "strategy": "auto"}


def test_a_field_added_since_the_run_was_recorded_is_not_a_change():
    """A model directory written before a pretrain field existed resumes without --allow-changes."""
    recorded = _run(learning_rate=1e-4, checkpoint_every=500)
    now = _run(learning_rate=1e-4, checkpoint_every=500, eval_examples=2048)
    assert run_changes(recorded, now) == {}


def test_changed_and_removed_fields_and_other_data_are_changes():
    recorded = _run(learning_rate=1e-4, seed=0)
    assert run_changes(recorded, _run(learning_rate=2e-4, seed=0)) == {"pretrain.learning_rate": (1e-4, 2e-4)}
    assert run_changes(recorded, _run(learning_rate=1e-4)) == {"pretrain.seed": (0, None)}
    assert run_changes(recorded, _run(data=("other",), learning_rate=1e-4, seed=0)) == {
        "data": (["data"], ["other"])}


def test_operational_fields_may_change():
    recorded = _run(log_every=50, eval_every=1000)
    assert run_changes(recorded, _run(log_every=10, eval_every=100)) == {}
