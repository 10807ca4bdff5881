"""Shared fixtures: the embedded data assets (fetched once into the cache) and tiny configs."""

from __future__ import annotations

import os

import pytest

from pipeline.host_memory import keep_freed_memory

# Keep TensorFlow quiet and on the CPU in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# As the trimbert command does (pipeline.host_memory): TensorFlow's freed tensors are not faulted in again.
keep_freed_memory()


@pytest.fixture(scope="session")
def vocab_path():
    """The bert-base-uncased WordPiece vocabulary (30,522 lines) from the asset cache."""
    from pipeline.assets import cache as assets

    return assets.ensure("vocab")


@pytest.fixture(scope="session")
def minilm_dir():
    """The pre-trained MiniLM-L6 encoder as a Hugging Face-format folder."""
    from pipeline.assets import cache as assets

    return assets.ensure("minilm-l6")


@pytest.fixture(scope="session")
def sentiment_dir():
    """Folder with sentiment-{movies,amazon,nyt,tweets}/{train,dev,test}.tsv."""
    from pipeline.assets import cache as assets

    return assets.ensure("sentiment")


@pytest.fixture(scope="session")
def corpus_dir():
    """Folder of plain-text pre-training corpus files (documents split by blank lines)."""
    from pipeline.assets import cache as assets

    return assets.ensure("corpus")


PACKED_SEQ_LEN = 64


def _preprocessed_sample(root, corpus_dir, vocab_path, characters: int, data_config):
    """The first ``characters`` of the corpus (whole documents), run through the Beam job in-process."""
    from beam_jobs import pipeline as beam_pipeline

    corpus = root / "corpus.txt"
    text = (corpus_dir / sorted(os.listdir(corpus_dir))[0]).read_text(encoding="utf-8")[:characters]
    corpus.write_text(text[:text.rfind("\n\n")] + "\n", encoding="utf-8")
    job = beam_pipeline.PreprocessJob(inputs=(str(corpus),), output=str(root / "data"), vocab=str(vocab_path),
                                      shards=2, data=data_config)
    beam_pipeline.run(job, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return root / "data"


@pytest.fixture(scope="session")
def packed_data(tmp_path_factory, corpus_dir, vocab_path):
    """~1,000 packed length-64 instances from the first 300 kB of the corpus, via the Beam job."""
    from configs.schema import DataConfig

    return _preprocessed_sample(tmp_path_factory.mktemp("packed_data"), corpus_dir, vocab_path, 300_000,
                                DataConfig(format="packed", seq_len=PACKED_SEQ_LEN))


@pytest.fixture(scope="session")
def bert_data(tmp_path_factory, corpus_dir, vocab_path):
    """A few hundred `bert`-format (statically masked, next-sentence labelled) length-64 records."""
    from configs.schema import DataConfig

    return _preprocessed_sample(tmp_path_factory.mktemp("bert_data"), corpus_dir, vocab_path, 60_000,
                                DataConfig(format="bert", seq_len=PACKED_SEQ_LEN, max_predictions=10, dupe_factor=1))
