"""Pre-training instances from tokenized documents in Google's ``bert`` format (``packed``: ``beam_jobs.packing``).

``bert`` follows Google's create_pretraining_data algorithm (docs/record_format.md): for each of
``dupe_factor`` passes, a document is cut into chunks up to a target length (shorter with
``short_seq_prob``); each chunk becomes segment A + B, where B is the true continuation or, half the
time, a span from a random other document (``next_sentence_labels`` = 1); 15% of the tokens are
chosen for prediction (whole words with ``whole_word_mask``), 80% of those replaced by [MASK], 10% by
a random id, 10% left unchanged.

Google draws the random document from the whole corpus held in memory. Here it is drawn from a
pool of ``pool_size`` text spans (at most ``POOL_CHARACTERS`` each), one from each of the documents
with the smallest seeded hash of their content: a uniform random sample of the corpus, found by a
bounded ``Top`` combine in a first, cheap read pass (no tokenization), so memory does not grow with
the corpus.

Every random choice comes from a generator seeded by (seed, document digest, pass), or from draws
keyed by the instance's own 64 random bits (its masking and its shard), so the output is a function
of the seed and the input only, whatever order Beam processes documents in and however they are
batched.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.transforms.combiners import TopCombineFn

from beam_jobs import whole_words
from beam_jobs.features import special_token_ids
from beam_jobs.masking import assemble, mask_batch, splitmix64
from beam_jobs.pairs import plan_pairs
from beam_jobs.records import Document, TokenizedDocument, stable_hash
from beam_jobs.wire import BertRecordEncoder, frame_records
from configs.schema import DataConfig

POOL_SIZE = 2048
# Characters of text kept per pool document: about 600 WordPiece tokens of English, enough for a
# segment B at seq_len 512, and a bound on memory even when a whole document is one long line.
POOL_CHARACTERS = 3000
# Instances masked and encoded together: large enough for numpy to pay, small in memory (a few MB).
BATCH_INSTANCES = 2048


class SpecialIds(NamedTuple):
    """Ids of the special tokens, the vocabulary size and, for whole-word masking, which ids are
    continuation pieces (:func:`beam_jobs.whole_words.continuation_table`; None: not known)."""

    pad: int
    cls: int
    sep: int
    mask: int
    vocabulary_size: int
    continuation: np.ndarray | None = None

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> SpecialIds:
        ids = special_token_ids(tokens)
        return cls(ids["[PAD]"], ids["[CLS]"], ids["[SEP]"], ids["[MASK]"], len(tokens),
                   whole_words.continuation_table(tokens))


class Records(NamedTuple):
    """Framed TFRecords bound for one shard, end to end, in input order.

    Args:
        shard: output shard index.
        data: the framed records.
        lengths: real (non-padding) tokens of each record.
    """

    shard: int
    data: bytes
    lengths: np.ndarray


class BertBatcher:
    """``bert`` instances of many documents, masked and encoded a batch at a time.

    :meth:`add` plans a document's pairs (``beam_jobs.pairs``; a generator seeded by (seed, document
    digest, pass) per pass) and queues them; once ``batch_instances`` are queued, the batch is
    gathered, masked (``beam_jobs.masking``; ``beam_jobs.whole_words`` with ``whole_word_mask``), encoded
    and framed (``beam_jobs.wire``) in numpy and returned as one :class:`Records` per shard. Every draw
    belongs to a document or an instance, so the bytes do not depend on where batches start. After
    :meth:`flush` the batcher is empty and can take the next unit's documents (preparing the pool once
    per worker, not once per unit).

    Args:
        config: the data config (seq_len, masking, dupe_factor, short_seq_prob, seed).
        special: special token ids and vocabulary size (and its continuation pieces for ``whole_word_mask``).
        shards: number of output shards.
        pool: the random-document pool in the order :func:`sort_pool` gives.
        batch_instances: instances per batch.
    """

    def __init__(self, config: DataConfig, special: SpecialIds, shards: int, pool: Sequence[TokenizedDocument],
                 batch_instances: int = BATCH_INSTANCES) -> None:
        if config.whole_word_mask and special.continuation is None:
            raise ValueError("whole-word masking needs the vocabulary's continuation pieces (SpecialIds.from_tokens)")
        self._config, self._special, self._shards, self._batch = config, special, shards, batch_instances
        self._pool_digests = [other.digest for other in pool]
        self._pool_starts = [_starts(other) for other in pool]
        self._pool_tokens = [_flat(other, starts[-1]) for other, starts in zip(pool, self._pool_starts, strict=True)]
        self._encoder = BertRecordEncoder(config.seq_len, config.max_predictions)
        self._reset()

    def discard(self) -> None:
        """Drops the queued instances (a unit that failed half-way leaves none to the next one)."""
        self._reset()

    def _reset(self) -> None:
        self._pieces: list[np.ndarray] = []
        self._offset = 0
        self._pairs: list[tuple[int, int, int, int, bool, int]] = []

    def _append(self, tokens: np.ndarray) -> int:
        self._pieces.append(tokens)
        self._offset += len(tokens)
        return self._offset - len(tokens)

    def add(self, document: TokenizedDocument) -> Iterator[Records]:
        """Queues every pass of ``document``; yields the records of a batch once one is full."""
        config, starts = self._config, _starts(document)
        offset = self._append(_flat(document, starts[-1]))
        for dupe in range(config.dupe_factor):
            rng = random.Random(stable_hash(config.seed, document.digest, dupe))
            for pair in plan_pairs(starts, document.digest, self._pool_starts, self._pool_digests, rng,
                                   config.seq_len, config.short_seq_prob):
                b_start = offset + pair.b_start
                if pair.source >= 0:
                    b_start = self._append(self._pool_tokens[pair.source][pair.b_start:pair.b_start + pair.b_length])
                self._pairs.append((offset + pair.a_start, pair.a_length, b_start, pair.b_length,
                                    pair.is_random_next, pair.key))
        if len(self._pairs) >= self._batch:
            yield from self.flush()

    def flush(self) -> Iterator[Records]:
        """Masks, encodes and frames the queued instances; yields them by shard."""
        if not self._pairs:
            return
        config, special = self._config, self._special
        # Explicit dtypes: numpy would make a mix of small and >= 2**63 keys float64.
        a_start, a_length, b_start, b_length, random_next, keys = (
            np.array(column, dtype=dtype) for column, dtype in zip(
                zip(*self._pairs, strict=True), (np.int64,) * 4 + (np.int64, np.uint64), strict=True))
        source = np.concatenate(self._pieces)
        self._reset()
        shard = (splitmix64(keys) % np.uint64(self._shards)).astype(np.int64)
        order = np.argsort(shard, kind="stable")
        a_start, a_length, b_start, b_length, random_next, keys, shard = (
            column[order] for column in (a_start, a_length, b_start, b_length, random_next, keys, shard))
        length = a_length + b_length + 3
        tokens = assemble(source, a_start, a_length, b_start, b_length, config.seq_len, special.cls, special.sep)
        rates = dict(max_predictions=config.max_predictions, masked_lm_prob=config.masked_lm_prob,
                     mask_token_rate=config.mask_token_rate, random_token_rate=config.random_token_rate,
                     mask_id=special.mask, vocabulary_size=special.vocabulary_size)
        if config.whole_word_mask:
            masked = whole_words.mask_batch(tokens, a_length, length, keys, continuation=special.continuation, **rates)
        else:
            masked = mask_batch(tokens, a_length, length, keys, **rates)
        data, sizes = self._encoder.encode(masked.input_ids, length, a_length + 2, masked.positions, masked.labels,
                                           masked.counts, random_next.astype(np.int64))
        framed = frame_records(data, sizes).tobytes()
        framed_ends = np.cumsum(sizes + 16)
        bounds = np.searchsorted(shard, np.arange(self._shards + 1))
        for number in range(self._shards):
            first, last = bounds[number], bounds[number + 1]
            if last > first:
                start = int(framed_ends[first - 1]) if first else 0
                yield Records(number, framed[start:int(framed_ends[last - 1])], length[first:last])


def _starts(document: TokenizedDocument) -> list[int]:
    return list(itertools.accumulate(map(len, document.sentences), initial=0))


def _flat(document: TokenizedDocument, total: int) -> np.ndarray:
    return np.fromiter(itertools.chain.from_iterable(document.sentences), dtype=np.int64, count=total)


def sort_pool(pool, seed: int) -> list[TokenizedDocument]:
    """The pool in the fixed order random draws index into: by seeded hash of each digest."""
    return sorted(pool, key=lambda other: stable_hash(seed, other.digest))


def text_span(document: Document, seed: int, characters: int = POOL_CHARACTERS) -> tuple[str, ...]:
    """Up to ``characters`` of a document's raw lines from a seeded random start (line, then
    sentence boundary inside a long line), cut at whitespace."""
    key = stable_hash(seed, document.digest, "start")
    lines = document.lines
    index = key % len(lines)
    first = lines[index]
    if len(first) > characters:
        offset = (key >> 32) % (len(first) - characters + 1)
        boundary = first.find(". ", offset)
        first = first[boundary + 2 if 0 <= boundary < offset + characters // 2 else offset:]
    span, total = [], 0
    for line in (first, *lines[index + 1:]):
        if total + len(line) > characters:
            cut = line.rfind(" ", 0, characters - total)
            if cut > 0:
                span.append(line[:cut])
            break
        span.append(line)
        total += len(line) + 1
    return tuple(span) or (first[:characters],)


class SampleRandomDocuments(beam.PTransform):
    """PCollection[Document] (raw) -> one list of Documents: a span of at most 3,000 characters from
    each of the ``pool_size`` documents with the smallest seeded content hash (a uniform sample).

    A plain global combine: Beam's ``Top.Of`` keeps per-bundle tops that it emits from
    ``finish_bundle``, which the Dask runner drops.

    Args:
        seed: the job seed.
        pool_size: documents in the pool.
    """

    def __init__(self, seed: int, pool_size: int = POOL_SIZE, label: str | None = None) -> None:
        super().__init__(label)
        self._seed, self._pool_size = seed, pool_size

    def expand(self, documents):
        seed = self._seed

        def span(document: Document) -> Document:
            return document._replace(unit=-1, ordinal=0, lines=text_span(document, seed))

        smallest = TopCombineFn(self._pool_size, key=lambda document: (stable_hash(seed, document.digest),
                                                                       document.digest), reverse=True)
        return (documents
                | "Span" >> beam.Map(span)
                | "Smallest" >> beam.CombineGlobally(smallest).without_defaults())
