"""Shared fixtures: the embedded data assets (fetched once into the cache) and tiny configs."""

from __future__ import annotations

import os

import pytest

# Keep TensorFlow quiet and on the CPU in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def vocab_path():
    """The bert-base-uncased WordPiece vocabulary (30,522 lines) from the asset cache."""
    from pipeline import assets

    return assets.ensure("vocab")


@pytest.fixture(scope="session")
def minilm_dir():
    """The pre-trained MiniLM-L6 encoder as a Hugging Face-format folder."""
    from pipeline import assets

    return assets.ensure("minilm-l6")


@pytest.fixture(scope="session")
def sentiment_dir():
    """Folder with sentiment-{movies,amazon,nyt,tweets}/{train,dev,test}.tsv."""
    from pipeline import assets

    return assets.ensure("sentiment")


@pytest.fixture(scope="session")
def corpus_dir():
    """Folder of plain-text pre-training corpus files (documents split by blank lines)."""
    from pipeline import assets

    return assets.ensure("corpus")
