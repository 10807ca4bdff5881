"""Fixtures of the fine-tuning tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def seed_predictions(monkeypatch):
    """Records, per seed, the predictions of each trained classifier on every dev and test split.

    The spy predicts again beside ``evaluate_seed`` (inference is deterministic), so the tests can
    work out the metrics, the best seed and the submission from predictions and gold labels alone.
    """
    from pipeline.finetune import run

    recorded: dict[int, dict[str, np.ndarray]] = {}
    evaluate_seed = run.evaluate_seed

    def spy(classifier, task, dev, test, batch_size, seed, *rest):
        recorded[seed] = {split: run.predict(classifier, encoded, batch_size, task.is_regression)
                          for split, encoded in {**dev, **test}.items()}
        return evaluate_seed(classifier, task, dev, test, batch_size, seed, *rest)

    monkeypatch.setattr(run, "evaluate_seed", spy)
    return recorded
