"""``trimbert teacher``: a masked-LM head fitted on a frozen pre-trained encoder, so it can teach.

Sentence-embedding checkpoints (the MiniLM-L6 asset) ship the encoder only. Distillation needs
logits over the vocabulary, so this runs the ordinary pre-training loop from ``--init PATH`` with
``pretrain.freeze_encoder``: only the head's transform, layernorm and output bias learn (its output
layer is the frozen token embedding). The output is a normal trimbert model directory, usable as
``--teacher``; ``summary.json`` gains the held-out masked-LM accuracy.

Held-out text: a separate preprocessed folder, or else the data folder's last shard, which the
head then never trains on.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable

import storage
from beam_jobs.manifest import FILE_NAME as MANIFEST_FILE
from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError
from configs.schema import Config, DataConfig, PhaseConfig, PretrainConfig
from pipeline import model_dir as model_dir_lib
from pipeline.model_source import ModelSource
from pipeline.pretrain import starting_points

SPLIT_DIR = "heldout_split"


@dataclasses.dataclass(frozen=True)
class TeacherOptions:
    """Args:
        source: the checkpoint whose encoder is kept (any ``pipeline.model_source`` kind).
        data_dir: a ``trimbert preprocess`` folder tokenized with the checkpoint's vocabulary.
        out_dir: the model directory to write (rerun to resume).
        steps: optimizer steps for the head.
        heldout_dir: held-out preprocessed text; ``None`` holds out ``data_dir``'s last shard.
        batch_size: sequences per step.
        learning_rate: peak rate (only the small head trains, so higher than pre-training's).
        heldout_examples: at most this many held-out sequences are scored.
    """

    source: str
    data_dir: str
    out_dir: str
    steps: int = 1000
    heldout_dir: str | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    heldout_examples: int = 2048


def teacher_config(source_config: Config, manifest: Manifest, options: TeacherOptions) -> Config:
    """The source's model and trim, trained head-only at the data's sequence length."""
    # Dropout off: the encoder is frozen and is used without dropout when it teaches.
    model = dataclasses.replace(source_config.model, dropout=0.0)
    pretrain = dataclasses.replace(
        PretrainConfig(), phases=(PhaseConfig(steps=options.steps, seq_len=manifest.seq_len,
                                              batch_size=options.batch_size),),
        learning_rate=options.learning_rate, warmup_fraction=0.1, next_sentence=False, freeze_encoder=True,
        checkpoint_every=options.steps, keep_checkpoints=1, log_every=max(1, options.steps // 10))
    data = dataclasses.replace(DataConfig(), format=manifest.format, seq_len=manifest.seq_len)
    config = Config(name=f"{pathlib.Path(options.source).name}-mlm-teacher", model=model,
                    trim=source_config.trim, data=data, pretrain=pretrain)
    return config.validate("trimbert teacher")


def split_last_shard(data_dir: str, work_dir: pathlib.Path) -> tuple[str, str]:
    """Two data folders of links to ``data_dir``'s shards: all but the last, and the last."""
    manifest = Manifest.read(data_dir)
    if len(manifest.shards) < 2:
        raise TrimbertError(f"{data_dir}: one shard, nothing to hold out; preprocess with --shards 2 or more, "
                            f"or give --heldout DIR")
    folders = []
    for name, part in (("train", manifest.shards[:-1]), ("heldout", manifest.shards[-1:])):
        folder = work_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for shard in part:
            link = folder / shard.name
            if not link.exists():
                os.symlink(pathlib.Path(data_dir).resolve() / shard.name, link)
        # The whole folder's manifest with these shards: the stats still count the whole data.
        # Its held-out shards are not linked: the last shard is this split's held-out text.
        split = dataclasses.replace(manifest, directory=str(folder), shards=part,
                                    examples=sum(shard.examples for shard in part),
                                    tokens=sum(shard.tokens for shard in part), heldout=None)
        storage.write_text(folder / MANIFEST_FILE, split.to_text())
        folders.append(str(folder))
    return folders[0], folders[1]


def heldout_accuracy(model, config: Config, manifest: Manifest, batch_size: int, max_examples: int) -> dict:
    """Masked-LM accuracy of a pre-training model on held-out text, masked as training masks it."""
    import tensorflow as tf

    from pipeline.pretrain import losses
    from pipeline.pretrain.input import pretraining_dataset
    from pipeline.pretrain.masking import masking_spec

    masking = masking_spec(config, manifest, manifest.seq_len) if manifest.format == "packed" else None
    batch_size = min(batch_size, manifest.examples)
    batches = max(1, min(manifest.examples, max_examples) // batch_size)
    dataset = pretraining_dataset(manifest, batch_size, seed=config.pretrain.seed + 1, shuffle_buffer=1,
                                  masking=masking)

    @tf.function(reduce_retracing=True)
    def score(inputs, labels):
        logits = model(inputs, training=False)["mlm_logits"]
        weights = labels["masked_lm_weights"]
        return losses.masked_lm_correct_sum(logits, labels["masked_lm_ids"], weights), tf.reduce_sum(weights)

    correct = masked = 0.0
    for inputs, labels in dataset.take(batches):
        batch_correct, batch_masked = score(inputs, labels)
        correct += float(batch_correct)
        masked += float(batch_masked)
    return {"heldout_mlm_accuracy": correct / max(masked, 1.0), "heldout_masked_tokens": int(masked),
            "heldout_sequences": batches * batch_size, "heldout_data": str(manifest.directory)}


def fit(options: TeacherOptions, log: Callable[[str], None] = print) -> dict:
    """Fits the head, scores it on held-out text and returns the summary (also in summary.json)."""
    from pipeline.pretrain import loop

    if options.steps < 1:
        raise TrimbertError("--steps must be >= 1")
    out_dir = pathlib.Path(options.out_dir)
    source_config = ModelSource.open(options.source).config
    train_dir, heldout_dir = options.data_dir, options.heldout_dir
    if heldout_dir is None:
        train_dir, heldout_dir = split_last_shard(options.data_dir, out_dir / SPLIT_DIR)
    manifest = Manifest.read(train_dir)
    config = teacher_config(source_config, manifest, options)
    run_options = loop.RunOptions(data_dirs=(train_dir,), model_dir=str(out_dir), init=options.source,
                                  vocabulary=manifest.readable_vocabulary)
    summary = loop.run(config, run_options, log=log)
    _, model = starting_points.build_teacher(out_dir)
    heldout = Manifest.read(heldout_dir)
    heldout.check_vocabulary(config.model.vocabulary_size, manifest.vocabulary.sha256)
    summary.update(heldout_accuracy(model, config, heldout, options.batch_size, options.heldout_examples))
    summary["source"] = options.source
    storage.write_json(out_dir / model_dir_lib.SUMMARY_FILE, summary)
    log(f"teacher: held-out masked-LM accuracy {summary['heldout_mlm_accuracy']:.4f} on "
        f"{summary['heldout_masked_tokens']} masked tokens of {heldout_dir}; use --teacher {out_dir}")
    return summary
