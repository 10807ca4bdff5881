"""The job's heavy step: one read unit in, its fragment files and counts out, in one ``process`` call.

Read -> normalise -> split sentences -> tokenize -> build instances -> write fragments all happen
inside the call for one unit, streaming (one document and one tokenizer batch held at a time), and
the step returns a single :class:`UnitResult`. This shape is what every runner executes alike:

* nothing is emitted from ``finish_bundle`` and there are no tagged outputs (Beam 2.77's Dask
  runner drops the first and hands every tagged output to every consumer);
* no side input: the ``bert`` random-document pool is a file an earlier step of the pipeline has
  written (``beam_jobs.pool``: the units reach this step only after it), since the Dask runner
  recomputes a side input inside every task that reads it;
* a unit's fragment names and bytes depend on the unit alone, so a step run twice rewrites the same
  files with the same bytes.

The FnApiRunner fused these stages anyway (everything after the unit reshuffle was one stage), so
parallelism is unchanged: it was, and is, across read units.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from beam_jobs.instances import BertBatcher, SpecialIds, packed_records, sort_pool
from beam_jobs.normalize import normalize_document, split_document
from beam_jobs.pool import read_pool
from beam_jobs.progress import UnitProgress
from beam_jobs.read import DocumentReader
from beam_jobs.records import ReadUnit, Stats, TokenizedDocument
from beam_jobs.tokenize import BatchTokenizer
from beam_jobs.write import FragmentWriter
from configs.schema import DataConfig


class UnitResult(NamedTuple):
    """What one read unit produced.

    Args:
        unit: the read unit's index.
        stats: read and tokenizer counts of the unit.
        fragments: ``(shard, (unit, fragment path, record stats))`` per shard the unit wrote to.
    """

    unit: int
    stats: dict
    fragments: list


class _ProcessUnitFn(beam.DoFn):
    def __init__(self, config: DataConfig, tokens: list[str], shards: int, text_field: str,
                 fragment_dir: str, pool_path: str | None, progress_dir: str, progress_seconds: float) -> None:
        self._config, self._tokens, self._shards = config, tokens, shards
        self._text_field, self._fragment_dir, self._pool_path = text_field, fragment_dir, pool_path
        self._progress_dir, self._progress_seconds = progress_dir, progress_seconds

    def setup(self) -> None:
        self._reader = DocumentReader(self._text_field, log_empty_files=True)
        self._tokenizer = BatchTokenizer(self._tokens)
        self._special = SpecialIds.from_tokens(self._tokens)
        self._bert_batcher: BertBatcher | None = None

    def _batcher(self) -> BertBatcher | None:
        """For ``bert``, the worker's batcher, built at its first unit: the pool file is written by an
        earlier step of the same pipeline, so it is read here, not in ``setup``."""
        if self._pool_path is None:
            return None
        if self._bert_batcher is None:
            pool = sort_pool(read_pool(self._pool_path), self._config.seed)
            self._bert_batcher = BertBatcher(self._config, self._special, self._shards, pool)
        self._bert_batcher.discard()
        return self._bert_batcher

    def process(self, unit: ReadUnit):
        stats = Stats()
        writer = FragmentWriter(self._fragment_dir, unit.index, self._config.seq_len)
        progress = UnitProgress(self._progress_dir, unit.index, self._progress_seconds)
        batcher = self._batcher()
        try:
            for document in self._reader.documents(unit, stats):
                document = split_document(normalize_document(document, self._config.lower_case))
                for tokenized in self._tokenizer.add(document, stats):
                    self._write(self._records(tokenized, batcher), writer, progress)
                    progress.update(tokens=sum(map(len, tokenized.sentences)))
                progress.update(documents=1, bytes=stats["bytes_read"] - progress.counts["bytes"])
            for tokenized in self._tokenizer.flush(stats):
                self._write(self._records(tokenized, batcher), writer, progress)
                progress.update(tokens=sum(map(len, tokenized.sentences)))
            if batcher is not None:
                self._write(batcher.flush(), writer, progress)
        finally:
            fragments = writer.close()
        progress.save()
        yield UnitResult(unit.index, dict(stats), fragments)

    def _records(self, document: TokenizedDocument, batcher: BertBatcher | None):
        if batcher is None:
            return packed_records(document, self._config, self._special, self._shards)
        return batcher.add(document)

    @staticmethod
    def _write(records, writer: FragmentWriter, progress: UnitProgress) -> None:
        for batch in records:
            writer.write(batch)
            progress.update(instances=len(batch.lengths))


class ProcessUnits(beam.PTransform):
    """PCollection[ReadUnit] -> PCollection[UnitResult]; fragments land in ``fragment_dir``.

    Args:
        config: the data config (format, seq_len, masking, dupe_factor, lower_case, seed).
        tokens: the vocabulary.
        shards: number of output shards.
        text_field: JSON Lines / TFDS key holding the text.
        fragment_dir: scratch folder for the fragment files.
        pool_path: for ``bert``, the pool file :func:`write_pool` wrote; None for ``packed``.
        progress_dir: folder of the per-unit progress files (``beam_jobs.progress``).
        progress_seconds: the driver's progress interval.
    """

    def __init__(self, config: DataConfig, tokens: list[str], shards: int, text_field: str, fragment_dir: str,
                 pool_path: str | None, progress_dir: str, progress_seconds: float,
                 label: str | None = None) -> None:
        super().__init__(label)
        self._fn = _ProcessUnitFn(config, tokens, shards, text_field, fragment_dir, pool_path, progress_dir,
                                  progress_seconds)

    def expand(self, units):
        return units | beam.ParDo(self._fn)
