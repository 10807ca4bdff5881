"""``manifest.json``: what the Beam job writes last beside its shards and what pre-training reads.

One type owns the file: the Beam job builds a :class:`Manifest` and writes :meth:`Manifest.to_text`;
every reader calls :meth:`Manifest.read`, which checks that the preprocessing finished, that every
listed shard (training and held-out) exists and that the records match this code's schema
(``beam_jobs.features``). Pre-training also calls :meth:`Manifest.check_shard_files`: the shards'
lengths (and, when asked, CRC-32Cs) against the ones the job recorded.
Plain Python (no TensorFlow, no Beam), so the Beam driver and the tf.data input both import it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import storage
from beam_jobs import features
from beam_jobs.checksums import file_crc32c
from configs.errors import TrimbertError

FILE_NAME = "manifest.json"
GZIP = "GZIP"  # the compression of gzipped shards, as TFRecordDataset's compression_type names it


@dataclasses.dataclass(frozen=True)
class Shard:
    """One output shard.

    Args:
        name: file name inside the data folder.
        examples: records in the shard.
        tokens: real tokens in those records ([CLS] and [SEP] included).
        bytes: the file's length as written; None when unknown (a manifest written before the Beam job
            recorded it: no check then). Keys ``bytes`` and ``crc32c`` are written only when known.
        crc32c: the CRC-32C of the file's bytes as 8 hex digits (``beam_jobs.checksums``); None when unknown.
    """

    name: str
    examples: int
    tokens: int
    bytes: int | None = None
    crc32c: str | None = None


@dataclasses.dataclass(frozen=True)
class Heldout:
    """Examples the job set apart from training, for evaluation (``trimbert preprocess --heldout-fraction``).

    Their shards (``heldout-00000-of-00002.tfrecord``, ``.gz`` when compressed) hold records of the
    training shards' format and compression; the manifest's ``examples``, ``tokens`` and ``shards``
    do not count them.

    Args:
        fraction: the share of the input asked to be held out.
        examples: records in the held-out shards.
        tokens: real tokens in those records ([CLS] and [SEP] included).
        shards: the held-out shards in order.
    """

    fraction: float
    examples: int
    tokens: int
    shards: tuple[Shard, ...]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The vocabulary the text was tokenized with.

    Args:
        path: the vocab.txt as the job was given it (or wrote it, for a learned one).
        size: tokens in it.
        sha256: ``features.vocabulary_sha256`` of its tokens.
        learned: the job learned it (``--learn-vocab``) rather than reading it.
    """

    path: str | None
    size: int
    sha256: str
    learned: bool


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the job read.

    Args:
        patterns: the inputs as given (globs or ``tfds:`` names).
        sources: the files they expanded to, each once (``[split]`` appended for a tfds split).
    """

    patterns: tuple[str, ...]
    sources: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A finished Beam job's output folder: its shards, their record schema, counts and provenance.

    Args:
        directory: the data folder (not written: the manifest lies in it).
        format: ``bert`` or ``packed`` (``beam_jobs.features``).
        seq_len: tokens per record, [CLS] and [SEP] included.
        max_predictions: masked positions per ``bert`` record; None for ``packed`` (masked later).
        data_config: the job's ``DataConfig`` as JSON data (provenance; no reader interprets it but
            pre-training, to warn when its ``whole_word_mask`` differs from the config's).
        seed: the job's seed.
        compression: ``"GZIP"`` for gzipped shards, else ``""`` (TFRecordDataset's compression_type).
        vocabulary: the vocabulary the text was tokenized with.
        inputs: what the job read.
        examples: records in all training shards.
        tokens: real tokens in all training records ([CLS] and [SEP] included, each ``bert`` pass counted).
        shards: the training shards in order.
        stats: the job's nested counts (``beam_jobs.pipeline.summarize_stats``).
        heldout: the held-out examples, or None when the job held none out (key ``heldout``, written
            only when present; a manifest without it is read with None).
    """

    directory: str
    format: str
    seq_len: int
    max_predictions: int | None
    data_config: dict[str, Any]
    seed: int
    compression: str
    vocabulary: Vocabulary
    inputs: Inputs
    examples: int
    tokens: int
    shards: tuple[Shard, ...]
    stats: dict[str, Any]
    heldout: Heldout | None = None

    @property
    def compressed(self) -> bool:
        """Whether the shards are gzipped."""
        return self.compression == GZIP

    @property
    def schema_key(self) -> tuple[str, int, int]:
        """(format, seq_len, max_predictions): the arguments of ``beam_jobs.features``' schema functions."""
        return self.format, self.seq_len, self.max_predictions or 0

    @property
    def schema_fingerprint(self) -> str:
        """The fingerprint of this format's record schema (``features.schema_fingerprint``)."""
        return features.schema_fingerprint(*self.schema_key)

    @property
    def fill(self) -> float:
        """Real tokens / token slots over every record: 1.0 means no padding."""
        return self.tokens / (self.examples * self.seq_len) if self.examples else 0.0

    @property
    def shard_paths(self) -> tuple[str, ...]:
        """Every shard's path, in order."""
        return tuple(storage.join(self.directory, shard.name) for shard in self.shards)

    @property
    def heldout_paths(self) -> tuple[str, ...]:
        """Every held-out shard's path, in order; empty without held-out data."""
        shards = self.heldout.shards if self.heldout else ()
        return tuple(storage.join(self.directory, shard.name) for shard in shards)

    @property
    def vocabulary_path(self) -> str | None:
        """The vocabulary's path as recorded when that file exists, else the file of that name beside the data."""
        recorded = self.vocabulary.path
        if not recorded:
            return None
        return recorded if storage.isfile(recorded) else storage.join(self.directory, storage.name(recorded))

    @property
    def readable_vocabulary(self) -> str | None:
        """The vocabulary file when it can be read (to copy into exports), else None."""
        path = self.vocabulary_path
        return path if path and storage.isfile(path) else None

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON data, in the Beam job's key order (``heldout`` last, when present)."""
        written = {
            "format": self.format,
            "schema": features.schema(*self.schema_key),
            "schema_fingerprint": self.schema_fingerprint,
            "seq_len": self.seq_len,
            "max_predictions": self.max_predictions,
            "data_config": copy.deepcopy(self.data_config),
            "seed": self.seed,
            "compression": self.compression,
            # Derived from "compression"; written for readers of older versions, which read only this key.
            "gzip": self.compressed,
            "vocab": {"path": self.vocabulary.path, "size": self.vocabulary.size, "sha256": self.vocabulary.sha256,
                      "learned": self.vocabulary.learned},
            "inputs": {"patterns": list(self.inputs.patterns), "sources": list(self.inputs.sources)},
            "examples": self.examples,
            "tokens": self.tokens,
            # Derived from tokens, examples and seq_len (so not read back): how little is padding.
            "fill": round(self.fill, 6),
            "shards": _shards_json(self.shards),
            "stats": copy.deepcopy(self.stats),
        }
        if self.heldout is not None:
            written["heldout"] = {"fraction": self.heldout.fraction, "examples": self.heldout.examples,
                                  "tokens": self.heldout.tokens, "shards": _shards_json(self.heldout.shards)}
        return written

    def to_text(self) -> str:
        """The bytes of ``manifest.json`` (as text): :meth:`to_json`, indented, keys sorted."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, directory: str | os.PathLike) -> Manifest:
        """The manifest of a finished job's folder.

        Raises:
            TrimbertError: no manifest.json (the job has not finished), a field missing or of the
                wrong kind, a listed shard (training or held-out) missing, or records of another schema
                than this code's. A manifest without ``heldout`` is read with ``heldout`` None.
        """
        directory = os.fspath(directory)
        path = storage.join(directory, FILE_NAME)
        if not storage.isfile(path):
            raise TrimbertError(f"{directory}: no {FILE_NAME}; is the preprocessing finished? "
                                f"(shards are only complete once the manifest exists)")
        try:
            raw = storage.read_json(path)
            manifest = _from_json(directory, raw)
            recorded_fingerprint = _field(raw, "schema_fingerprint", str)
        except (KeyError, TypeError, ValueError) as error:
            raise TrimbertError(f"{path}: malformed manifest, field {error} missing or wrong") from error
        missing = [storage.name(shard) for shard in manifest.shard_paths + manifest.heldout_paths
                   if not storage.isfile(shard)]
        if missing:
            raise TrimbertError(f"{path}: lists shards that are missing: {', '.join(missing[:3])}")
        expected = manifest.schema_fingerprint
        if expected != recorded_fingerprint:
            raise TrimbertError(f"{path}: schema fingerprint {recorded_fingerprint[:12]} does not "
                                f"match this reader's {expected[:12]} for format {manifest.format}")
        return manifest

    def check_shard_files(self, checksums: bool = False) -> None:
        """Fails at the first listed shard (training, then held-out) whose file differs from the record.

        One stat per shard compares its length; with ``checksums``, every shard is also read whole and
        its CRC-32C compared (all the data read once). A shard whose figure is unknown (an older
        manifest) is not checked for it.

        Raises:
            TrimbertError: naming the shard, the recorded and the actual length (or CRC-32C).
        """
        shards = self.shards + (self.heldout.shards if self.heldout else ())
        for shard, path in zip(shards, self.shard_paths + self.heldout_paths, strict=True):
            if shard.bytes is not None and (actual := storage.size(path)) != shard.bytes:
                raise TrimbertError(f"{path}: {actual} bytes, but {FILE_NAME} lists {shard.bytes}; the shard was "
                                    f"truncated or changed after preprocessing (restore it or preprocess again)")
            if checksums and shard.crc32c is not None and (crc := file_crc32c(path)) != shard.crc32c:
                raise TrimbertError(f"{path}: CRC-32C {crc}, but {FILE_NAME} lists {shard.crc32c}; the shard was "
                                    f"corrupted or changed after preprocessing (restore it or preprocess again)")

    def check_enough_examples(self, batch_size: int, where: str) -> None:
        """Fails unless one global batch can be drawn: the stream repeats, so an empty one would spin."""
        if self.examples < batch_size:
            raise TrimbertError(
                f"{self.directory}: {self.examples} example(s) in {len(self.shards)} shard(s), fewer than "
                f"{where} batch_size {batch_size}; preprocess more text or lower the batch size")

    def pipeline_examples(self, pipelines: int, pipeline_id: int) -> int:
        """Examples one of ``pipelines`` input pipelines reads (``pipeline.pretrain.input`` gives each
        pipeline every ``pipelines``-th shard, or every ``pipelines``-th record when shards are fewer)."""
        if len(self.shards) < pipelines:
            return self.examples // pipelines
        return sum(shard.examples for shard in self.shards[pipeline_id::pipelines])

    def check_vocabulary(self, vocabulary_size: int, vocabulary_sha256: str | None = None) -> None:
        """Fails unless the model's vocabulary is the one the data was tokenized with."""
        if vocabulary_size != self.vocabulary.size:
            raise TrimbertError(
                f"{self.directory}/{FILE_NAME}: vocabulary size {self.vocabulary.size} does not match "
                f"the model's model.vocabulary_size {vocabulary_size}")
        if vocabulary_sha256 and vocabulary_sha256 != self.vocabulary.sha256:
            raise TrimbertError(
                f"{self.directory}/{FILE_NAME}: vocabulary sha256 {self.vocabulary.sha256[:12]}... differs "
                f"from the model's {vocabulary_sha256[:12]}... (same size, different tokens)")


def _from_json(directory: str, raw: dict[str, Any]) -> Manifest:
    vocabulary, inputs = _field(raw, "vocab"), _field(raw, "inputs")
    return Manifest(
        directory=directory, format=_field(raw, "format"), seq_len=_field(raw, "seq_len", int),
        max_predictions=_field(raw, "max_predictions", lambda value: None if value is None else int(value)),
        data_config=_field(raw, "data_config", dict), seed=_field(raw, "seed", int),
        compression=_field(raw, "compression"),
        vocabulary=Vocabulary(path=_field(vocabulary, "path"), size=_field(vocabulary, "size", int),
                              sha256=_field(vocabulary, "sha256"), learned=_field(vocabulary, "learned", bool)),
        inputs=Inputs(patterns=_field(inputs, "patterns", tuple), sources=_field(inputs, "sources", tuple)),
        examples=_field(raw, "examples", int), tokens=_field(raw, "tokens", int),
        shards=_shards(_field(raw, "shards", list)), stats=_field(raw, "stats", dict),
        heldout=_heldout(_field(raw, "heldout", dict)) if "heldout" in raw else None)


def _heldout(raw: dict[str, Any]) -> Heldout:
    return Heldout(fraction=_field(raw, "fraction", float), examples=_field(raw, "examples", int),
                   tokens=_field(raw, "tokens", int), shards=_shards(_field(raw, "shards", list)))


def _shards(raw: list[Any]) -> tuple[Shard, ...]:
    return tuple(Shard(name=_field(shard, "name"), examples=_field(shard, "examples", int),
                       tokens=_field(shard, "tokens", int),
                       bytes=_field(shard, "bytes", int) if "bytes" in shard else None,
                       crc32c=_field(shard, "crc32c", str) if "crc32c" in shard else None) for shard in raw)


def _shards_json(shards: tuple[Shard, ...]) -> list[dict[str, Any]]:
    written = []
    for shard in shards:
        known = {"bytes": shard.bytes, "crc32c": shard.crc32c}
        written.append({"name": shard.name, "examples": shard.examples, "tokens": shard.tokens,
                        **{key: value for key, value in known.items() if value is not None}})
    return written


def _field(mapping: dict[str, Any], key: str, convert: Callable[[Any], Any] = lambda value: value) -> Any:
    """``convert(mapping[key])``; a KeyError naming ``key`` when it is missing or of the wrong kind."""
    try:
        return convert(mapping[key])
    except (TypeError, ValueError) as error:
        raise KeyError(key) from error
