"""Shared fixtures: the embedded data assets (fetched once into the cache), one tiny config, one tiny
encoder folder, one tiny pre-training model directory, one tiny preprocessed corpus, and tiny
pre-training runs (in this process, or as the ``trimbert pretrain`` command)."""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

from beam_jobs.quiet_tensorflow import quiet_tensorflow_start_up
from pipeline.host_memory import keep_freed_memory

# Keep TensorFlow quiet and on the CPU in every test process, its start-up notices included (as the
# trimbert command does).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
quiet_tensorflow_start_up()
# As the trimbert command does (pipeline.host_memory): TensorFlow's freed tensors are not faulted in again.
keep_freed_memory()


def _split_the_cpu_in_two() -> None:
    """Two logical CPU devices, for the tests of mirrored replicas in this process. Only possible before
    TensorFlow's runtime starts, so it is done here, before any test module is collected; ops still run on
    /CPU:0 unless a test asks for a strategy over both."""
    from pipeline.pretrain import distribution

    distribution.split_cpu(2)


_split_the_cpu_in_two()


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


def _preprocessed_sample(root, corpus_dir, vocab_path, characters: int, data_config, heldout_fraction: float = 0.0):
    """The first ``characters`` of the corpus (whole documents), run through the Beam job in-process."""
    from beam_jobs import pipeline as beam_pipeline

    corpus = root / "corpus.txt"
    text = (corpus_dir / sorted(os.listdir(corpus_dir))[0]).read_text(encoding="utf-8")[:characters]
    corpus.write_text(text[:text.rfind("\n\n")] + "\n", encoding="utf-8")
    job = beam_pipeline.PreprocessJob(inputs=(str(corpus),), output=str(root / "data"), vocab=str(vocab_path),
                                      shards=2, data=data_config, heldout_fraction=heldout_fraction)
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


@pytest.fixture(scope="session")
def packed_heldout_data(tmp_path_factory, corpus_dir, vocab_path):
    """``packed_data``'s text run through the Beam job with ``--heldout-fraction 0.2``: training and
    held-out shards, as a user's job writes them."""
    from configs.schema import DataConfig

    return _preprocessed_sample(tmp_path_factory.mktemp("packed_heldout"), corpus_dir, vocab_path, 300_000,
                                DataConfig(format="packed", seq_len=PACKED_SEQ_LEN), heldout_fraction=0.2)


@pytest.fixture(scope="session")
def bert_heldout_data(tmp_path_factory, corpus_dir, vocab_path):
    """``bert`` records of the first 120 kB of the corpus with ``--heldout-fraction 0.3``."""
    from configs.schema import DataConfig

    return _preprocessed_sample(tmp_path_factory.mktemp("bert_heldout"), corpus_dir, vocab_path, 120_000,
                                DataConfig(format="bert", seq_len=PACKED_SEQ_LEN, max_predictions=10, dupe_factor=1),
                                heldout_fraction=0.3)


def _google_word_groups(strings: list[str]) -> list[list[int]]:
    """The word groups of one instance as Google's create_masked_lm_predictions (create_pretraining_data.py,
    ``do_whole_word_mask``) builds them before its shuffle: every token but [CLS] and [SEP] (and [PAD]) is a
    candidate, and a ``##`` piece joins the previous candidate's group. Lists of positions."""
    groups: list[list[int]] = []
    for index, token in enumerate(strings):
        if token in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        if groups and token.startswith("##"):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


@pytest.fixture(scope="session")
def google_word_groups():
    """:func:`_google_word_groups`: token strings -> Google's whole-word groups of positions."""
    return _google_word_groups


# ---------------------------------------------------------------------------
# One tiny encoder: 1 block of width 32 on the bert-base-uncased vocabulary (fast to build and train: a second
# block made the fine-tuning tests 1.4x to 1.6x slower, measured; docs/testing.md)
# ---------------------------------------------------------------------------

TINY_MODEL = ["model.num_layers=1", "model.hidden_dim=32", "model.intermediate_dim=64", "model.num_heads=2",
              f"model.max_sequence_length={PACKED_SEQ_LEN}", f"data.seq_len={PACKED_SEQ_LEN}"]
# Fine-tuning in seconds: short sequences, small batches, one epoch.
FAST_FINETUNE = ["finetune.seq_len=32", "finetune.batch_size=4", "finetune.epochs=1", "finetune.learning_rate=1e-3"]


@pytest.fixture(scope="session")
def tiny_config():
    """The shipped ``tiny`` config shrunk to :data:`TINY_MODEL`, with :data:`FAST_FINETUNE`."""
    from configs import schema as config_lib

    return config_lib.load("tiny", TINY_MODEL + FAST_FINETUNE)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tiny_config, vocab_path):
    """A freshly initialised tiny encoder saved as a Hugging Face folder with the uncased vocabulary."""
    import models

    folder = tmp_path_factory.mktemp("tiny") / "tiny-encoder"
    models.save_pretrained(models.build_encoder(tiny_config), folder, vocabulary_path=vocab_path)
    return folder


def write_model_dir(directory, config, vocab_path, seed: int = 0, steps=(100, 200), next_sentence: bool = False):
    """A pre-training model directory as ``trimbert pretrain`` lays it out, with a checkpoint of a freshly
    initialised masked-LM model (the next-sentence head as asked, weights from ``seed``) at each of ``steps``
    (none for ``()``) and no ``encoder/`` export yet (a run still going): its vocabulary is found through
    the sha256 ``run.json`` records."""
    import hashlib

    import keras
    import tensorflow as tf

    import models
    from configs import schema as config_lib

    directory = pathlib.Path(directory)
    tokens = pathlib.Path(vocab_path).read_text(encoding="utf-8").splitlines()
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "config.yaml").write_text(config_lib.dump(config))
    (directory / "run.json").write_text(json.dumps({
        "config": config.to_dict(), "next_sentence": next_sentence,
        "vocabulary_sha256": hashlib.sha256(("\n".join(tokens) + "\n").encode()).hexdigest()}))
    if steps:
        keras.utils.set_random_seed(seed)
        model = models.build_pretraining_model(models.build_encoder(config), next_sentence=next_sentence)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(directory / "checkpoints"),
                                             max_to_keep=len(steps))
        for step in steps:
            manager.save(checkpoint_number=step)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_config, vocab_path):
    """:func:`write_model_dir` of the tiny config, checkpoints at steps 100 and 200. Treat it as read-only."""
    return write_model_dir(tmp_path_factory.mktemp("pretrain") / "tiny-run", tiny_config, vocab_path)


@pytest.fixture(scope="session")
def model_dir_writer(vocab_path):
    """``(directory, config, seed=0, steps=(100, 200), next_sentence=False) -> directory``: :func:`write_model_dir`."""

    def write(directory, config, seed=0, steps=(100, 200), next_sentence=False):
        return write_model_dir(directory, config, vocab_path, seed, steps, next_sentence)

    return write


# ---------------------------------------------------------------------------
# Tiny pre-training runs on packed_data
# ---------------------------------------------------------------------------


def _pretrain_overrides(steps: int, batch_size: int = 16, **extra) -> list[str]:
    """The tiny encoder pre-trained for ``steps`` on batches of ``packed_data``, logging every step."""
    overrides = TINY_MODEL + [
        f"pretrain.phases=[{{steps: {steps}, seq_len: {PACKED_SEQ_LEN}, batch_size: {batch_size}}}]",
        "pretrain.log_every=1",
        "pretrain.jit_compile=false"]  # XLA's compile would add seconds per run; tests that need it set it
    return overrides + [f"{key}={value}" for key, value in extra.items()]


@pytest.fixture(scope="session")
def pretrain_overrides():
    """``(steps, batch_size=16, **{"section.field": value}) -> --set overrides`` of a tiny run."""
    return _pretrain_overrides


@pytest.fixture(scope="session")
def run_pretraining():
    """``(data, model_dir, steps, batch_size=16, **overrides) -> summary``: a tiny run in this process."""

    def run(data, model_dir, steps, batch_size=16, **extra):
        from configs import schema as config_lib
        from pipeline.pretrain import loop as pretrain

        config = config_lib.load("tiny", _pretrain_overrides(steps, batch_size, **extra))
        options = pretrain.RunOptions(data_dirs=(str(data),), model_dir=str(model_dir))
        return pretrain.run(config, options, log=lambda line: None)

    return run


@pytest.fixture(scope="session")
def pretrain_command():
    """``(data, model_dir, steps, *flags, env=None, batch_size=16, **overrides) -> (argv, environment)`` of
    the same tiny run as the ``trimbert pretrain`` command."""

    def command(data, model_dir, steps, *flags, env=None, batch_size=16, **extra):
        argv = [sys.executable, "-m", "pipeline.cli", "pretrain", "--config", "tiny", "--data", str(data),
                "--model-dir", str(model_dir), *flags]
        for override in _pretrain_overrides(steps, batch_size, **extra):
            argv += ["--set", override]
        return argv, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}

    return command


@pytest.fixture(scope="session")
def read_metrics():
    """``model_dir -> [record per logged step]`` from its metrics.jsonl."""
    return lambda model_dir: [json.loads(line) for line in
                              (pathlib.Path(model_dir) / "metrics.jsonl").read_text().splitlines()]
