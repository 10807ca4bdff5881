"""The job's heavy step: one read unit in, its fragment files and counts out, in one ``process`` call.

Read -> normalise -> split sentences -> tokenize -> build instances -> write fragments all happen
inside the call for one unit, streaming (one document and one tokenizer batch held at a time), and
the step returns a single :class:`UnitResult`. This shape is what every runner executes alike:

* nothing is emitted from ``finish_bundle`` and there are no tagged outputs (Beam 2.77's Dask
  runner drops the first and hands every tagged output to every consumer);
* no side input: the ``bert`` random-document pool is a file an earlier step of the pipeline has
  written (``beam_jobs.pool``: the units reach this step only after it), since the Dask runner
  recomputes a side input inside every task that reads it;
* a unit's fragment names and bytes depend on the input alone (the unit, and for ``packed`` stream
  packing the documents it reads on into the next units: ``beam_jobs.packing``), so a step run twice
  rewrites the same files with the same bytes.

The FnApiRunner fused these stages anyway (everything after the unit reshuffle was one stage), so
parallelism is unchanged: it was, and is, across read units.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from beam_jobs.instances import BertBatcher, SpecialIds, sort_pool
from beam_jobs.normalize import normalize_document, split_document
from beam_jobs.packing import DocumentPacker, StreamPacker, starts_chain
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


class _BertBuilder:
    """The worker's :class:`BertBatcher` behind the builders' interface (mark, add, finish)."""

    def __init__(self, batcher: BertBatcher) -> None:
        self._batcher = batcher

    def mark(self, document) -> None:
        """Nothing to note: every document is built by its own unit."""

    def add(self, document: TokenizedDocument):
        return self._batcher.add(document)

    def finish(self, read_on):
        return self._batcher.flush()


class _ProcessUnitFn(beam.DoFn):
    def __init__(self, config: DataConfig, tokens: list[str], units: list[ReadUnit], shards: int, text_field: str,
                 fragment_dir: str, pool_path: str | None, progress_dir: str, progress_seconds: float) -> None:
        self._config, self._tokens, self._units, self._shards = config, tokens, units, shards
        self._text_field, self._fragment_dir, self._pool_path = text_field, fragment_dir, pool_path
        self._progress_dir, self._progress_seconds = progress_dir, progress_seconds

    def setup(self) -> None:
        self._reader = DocumentReader(self._text_field, log_empty_files=True)
        self._reader_on = DocumentReader(self._text_field, log_empty_files=False)
        self._tokenizer = BatchTokenizer(self._tokens)
        self._special = SpecialIds.from_tokens(self._tokens)
        self._bert_batcher: BertBatcher | None = None

    def _builder(self, unit: ReadUnit):
        """What turns the unit's tokenized documents into records: for ``bert`` the worker's batcher,
        built at its first unit (the pool file is written by an earlier step of the same pipeline, so
        it is read here, not in ``setup``); for ``packed`` a packer of the configured kind."""
        if self._config.format == "packed":
            if self._config.packing == "document":
                return DocumentPacker(self._config, self._special, self._shards)
            return StreamPacker(self._config, self._special, self._shards, first_unit=unit.index == 0)
        if self._bert_batcher is None:
            pool = sort_pool(read_pool(self._pool_path), self._config.seed)
            self._bert_batcher = BertBatcher(self._config, self._special, self._shards, pool)
        self._bert_batcher.discard()
        return _BertBuilder(self._bert_batcher)

    def process(self, unit: ReadUnit):
        stats = Stats()
        writer = FragmentWriter(self._fragment_dir, unit.index, self._config.seq_len)
        progress = UnitProgress(self._progress_dir, unit.index, self._progress_seconds)
        builder = self._builder(unit)
        try:
            for document in self._reader.documents(unit, stats):
                builder.mark(document)
                document = split_document(normalize_document(document, self._config.lower_case))
                for tokenized in self._tokenizer.add(document, stats):
                    self._write(builder.add(tokenized), writer, progress)
                    progress.update(tokens=sum(map(len, tokenized.sentences)))
                progress.update(documents=1, bytes=stats["bytes_read"] - progress.counts["bytes"])
            for tokenized in self._tokenizer.flush(stats):
                self._write(builder.add(tokenized), writer, progress)
                progress.update(tokens=sum(map(len, tokenized.sentences)))
            self._write(builder.finish(self._read_on(unit)), writer, progress)
        finally:
            fragments = writer.close()
        progress.save()
        yield UnitResult(unit.index, dict(stats), fragments)

    def _read_on(self, unit: ReadUnit):
        """The tokenized documents after ``unit``, up to the next chain start (``beam_jobs.packing``),
        for the chain the unit ends in; read lazily and counted nowhere (their units count them)."""
        uncounted = Stats()
        for later in self._units[unit.index + 1:]:
            for document in self._reader_on.documents(later, uncounted):
                if starts_chain(document, self._config):
                    yield from self._tokenizer.flush(uncounted)
                    return
                document = split_document(normalize_document(document, self._config.lower_case))
                yield from self._tokenizer.add(document, uncounted)
        yield from self._tokenizer.flush(uncounted)

    @staticmethod
    def _write(records, writer: FragmentWriter, progress: UnitProgress) -> None:
        for batch in records:
            writer.write(batch)
            progress.update(instances=len(batch.lengths))


class ProcessUnits(beam.PTransform):
    """PCollection[ReadUnit] -> PCollection[UnitResult]; fragments land in ``fragment_dir``.

    Args:
        config: the data config (format, packing, seq_len, masking, dupe_factor, lower_case, seed).
        tokens: the vocabulary.
        units: every read unit of the job, in order (a ``packed`` stream chain may run on into later units).
        shards: number of output shards.
        text_field: JSON Lines / TFDS key holding the text.
        fragment_dir: scratch folder for the fragment files.
        pool_path: for ``bert``, the pool file :func:`write_pool` wrote; None for ``packed``.
        progress_dir: folder of the per-unit progress files (``beam_jobs.progress``).
        progress_seconds: the driver's progress interval.
    """

    def __init__(self, config: DataConfig, tokens: list[str], units: list[ReadUnit], shards: int, text_field: str,
                 fragment_dir: str, pool_path: str | None, progress_dir: str, progress_seconds: float,
                 label: str | None = None) -> None:
        super().__init__(label)
        self._fn = _ProcessUnitFn(config, tokens, units, shards, text_field, fragment_dir, pool_path, progress_dir,
                                  progress_seconds)

    def expand(self, units):
        return units | beam.ParDo(self._fn)
