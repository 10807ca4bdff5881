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
from beam_jobs.records import ReadUnit, Stats, TokenizedDocument, held_out
from beam_jobs.tokenize import BatchTokenizer
from beam_jobs.write import FragmentWriter
from configs.schema import DataConfig


class UnitResult(NamedTuple):
    """What one read unit produced.

    Args:
        unit: the read unit's index.
        stats: read and tokenizer counts of the unit.
        fragments: ``(shard, (unit, fragment path, record stats))`` per shard the unit wrote to.
        heldout_fragments: the same for the held-out shards.
    """

    unit: int
    stats: dict
    fragments: list
    heldout_fragments: list


class Destination(NamedTuple):
    """Where one of the job's two document streams goes: training, or held out for evaluation.

    Args:
        fragment_dir: scratch folder for its fragment files.
        shards: its number of shards.
    """

    fragment_dir: str
    shards: int


class _BertBuilder:
    """A :class:`BertBatcher` behind the builders' interface (mark, add, finish)."""

    def __init__(self, batcher: BertBatcher) -> None:
        self._batcher = batcher

    def mark(self, document) -> None:
        """Nothing to note: every document is built by its own unit."""

    def add(self, document: TokenizedDocument):
        return self._batcher.add(document)

    def finish(self, read_on):
        return self._batcher.flush()


class _ProcessUnitFn(beam.DoFn):
    def __init__(self, config: DataConfig, tokens: list[str], units: list[ReadUnit], text_field: str,
                 training: Destination, heldout: Destination, heldout_fraction: float, pool_path: str | None,
                 progress_dir: str, progress_seconds: float) -> None:
        self._config, self._tokens, self._units, self._text_field = config, tokens, units, text_field
        self._destinations = {False: training, True: heldout}
        self._heldout_fraction, self._pool_path = heldout_fraction, pool_path
        self._progress_dir, self._progress_seconds = progress_dir, progress_seconds

    def setup(self) -> None:
        self._reader = DocumentReader(self._text_field, log_empty_files=True)
        self._reader_on = DocumentReader(self._text_field, log_empty_files=False)
        self._tokenizer = BatchTokenizer(self._tokens)
        self._special = SpecialIds.from_tokens(self._tokens)
        self._bert_batchers: dict[bool, BertBatcher] = {}
        self._pool: list[TokenizedDocument] | None = None

    def _held_out(self, digest: str) -> bool:
        return held_out(digest, self._config.seed, self._heldout_fraction)

    def _builder(self, unit: ReadUnit, heldout: bool):
        """What turns one stream's tokenized documents into records: for ``bert`` the worker's batcher
        of that stream, built at its first unit (the pool file is written by an earlier step of the
        same pipeline, so it is read here, not in ``setup``); for ``packed`` a packer of the
        configured kind."""
        shards = self._destinations[heldout].shards
        if self._config.format == "packed":
            if self._config.packing == "document":
                return DocumentPacker(self._config, self._special, shards)
            return StreamPacker(self._config, self._special, shards, first_unit=unit.index == 0)
        if heldout not in self._bert_batchers:
            if self._pool is None:  # one read of the pool file per worker, whatever the streams
                self._pool = sort_pool(read_pool(self._pool_path), self._config.seed)
            self._bert_batchers[heldout] = BertBatcher(self._config, self._special, shards, self._pool)
        self._bert_batchers[heldout].discard()
        return _BertBuilder(self._bert_batchers[heldout])

    def process(self, unit: ReadUnit):
        stats = Stats()
        seq_len = self._config.seq_len
        # The held-out stream only when documents are held out: its packer would otherwise read on to
        # the end of the corpus looking for a held-out chain start that never comes.
        streams = (False, True) if self._heldout_fraction else (False,)
        writers = {held: FragmentWriter(self._destinations[held].fragment_dir, unit.index, seq_len)
                   for held in streams}
        builders = {held: self._builder(unit, held) for held in writers}
        progress = UnitProgress(self._progress_dir, unit.index, self._progress_seconds)

        def build(tokenized_documents) -> None:
            for tokenized in tokenized_documents:
                held = self._held_out(tokenized.digest)
                self._write(builders[held].add(tokenized), writers[held], progress)
                progress.update(tokens=sum(map(len, tokenized.sentences)))

        try:
            for document in self._reader.documents(unit, stats):
                held = self._held_out(document.digest)
                stats["heldout_documents"] += held
                builders[held].mark(document)
                build(self._tokenizer.add(split_document(normalize_document(document, self._config.lower_case)),
                                          stats))
                progress.update(documents=1, bytes=stats["bytes_read"] - progress.counts["bytes"])
            build(self._tokenizer.flush(stats))
            for held, builder in builders.items():
                self._write(builder.finish(self._read_on(unit, held)), writers[held], progress)
        finally:
            fragments = {held: writer.close() for held, writer in writers.items()}
        progress.save()
        yield UnitResult(unit.index, dict(stats), fragments[False], fragments.get(True, []))

    def _read_on(self, unit: ReadUnit, heldout: bool):
        """One stream's tokenized documents after ``unit``, up to that stream's next chain start
        (``beam_jobs.packing``), for the chain the unit ends in; the other stream's documents are
        passed over untokenized. Read lazily and counted nowhere (their units count them)."""
        uncounted = Stats()
        for later in self._units[unit.index + 1:]:
            for document in self._reader_on.documents(later, uncounted):
                if self._held_out(document.digest) != heldout:
                    continue
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
    """PCollection[ReadUnit] -> PCollection[UnitResult]; fragments land in the destinations' folders.

    Args:
        config: the data config (format, packing, seq_len, masking, dupe_factor, lower_case, seed).
        tokens: the vocabulary.
        units: every read unit of the job, in order (a ``packed`` stream chain may run on into later units).
        text_field: JSON Lines / TFDS key holding the text.
        training: where the training records go.
        heldout: where the held-out records go.
        heldout_fraction: the share of documents held out (``records.held_out``); 0 holds none out.
        pool_path: for ``bert``, the pool file :func:`write_pool` wrote; None for ``packed``.
        progress_dir: folder of the per-unit progress files (``beam_jobs.progress``).
        progress_seconds: the driver's progress interval.
    """

    def __init__(self, config: DataConfig, tokens: list[str], units: list[ReadUnit], text_field: str,
                 training: Destination, heldout: Destination, heldout_fraction: float, pool_path: str | None,
                 progress_dir: str, progress_seconds: float, label: str | None = None) -> None:
        super().__init__(label)
        self._fn = _ProcessUnitFn(config, tokens, units, text_field, training, heldout, heldout_fraction, pool_path,
                                  progress_dir, progress_seconds)

    def expand(self, units):
        return units | beam.ParDo(self._fn)
