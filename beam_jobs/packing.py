"""``packed`` sequences: documents packed into a stream (the default), or one document per sequence.

``stream`` packing fills every sequence from a stream of documents, each followed by [SEP], as
RoBERTa's FULL-SENTENCES inputs and Hugging Face's ``group_texts`` do: a sequence is [CLS] and the
next ``seq_len - 1`` tokens of the stream (cut anywhere, as ``group_texts`` cuts), so only the last
sequence of a *chain* is padded, and a document may end in one sequence and continue in the next.
``document`` packing cuts each document on its own ([CLS] ... [SEP], its last sequence padded): on a
corpus of short documents most of each sequence is then padding.

The output must stay a function of the seed and the documents, whatever runner reads them and
however the text is cut into files or byte ranges; so the stream cannot follow read units or arrival
order. It is cut instead into *chains* at documents chosen by their own content: a document starts a
chain when a seeded hash of its digest falls below ``characters / (CHAIN_SEQUENCES * seq_len *
CHARACTERS_PER_TOKEN)`` (content-defined chunking), so a chain holds about ``CHAIN_SEQUENCES``
sequences of text, and the first chain starts at the start of the corpus. A chain is packed by the
read unit where it starts; when the unit ends inside a chain, that unit reads on into the following
units until the next chain start (as a byte range reads past its end to finish its last document),
and a unit skips the documents before its first chain start (an earlier unit packs them). Memory
stays one sequence per worker, and the documents read twice are about one chain per unit.

Held-out documents (``--heldout-fraction``) form a stream of their own, cut into chains by the same
rule: a unit reading on for its held-out chain passes over about ``1 / fraction`` times a chain of
text, but only reads and hashes it, tokenizing just the held-out documents in it. Only a unit where
a chain of the stream starts (or the first unit, where the corpus starts) reads on, over the gap to
the stream's next chain start, so all the reading on of a job adds up to at most one more read of
the corpus per stream; there is no held-out stream when nothing is held out. Measured on the
embedded corpus in one in-process worker, two runs each: 7.56 and 7.50 user s with
``--heldout-fraction 0.01`` against 7.29 and 7.48 without.

Every chain loses on average half a sequence to padding, so the fill (real tokens / token slots) is
about ``1 - 1 / (2 * CHAIN_SEQUENCES)``. Chains longer than a few sequences need documents shorter than
``CHAIN_SEQUENCES`` sequences; a corpus of long documents wastes little with either packing. A sequence's shard is
a seeded hash of (its chain's first document, its number in the chain).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

import numpy as np

from beam_jobs.features import encode_example, feature_specs, frame_record
from beam_jobs.instances import Records, SpecialIds
from beam_jobs.records import Document, TokenizedDocument, stable_hash
from configs.schema import DataConfig

# About this many sequences of text per chain; the fill is about 1 - 1 / (2 * CHAIN_SEQUENCES).
CHAIN_SEQUENCES = 64
# Decides chain starts before tokenization (so a unit knows where to stop reading on); English
# WordPiece averages 4-5 characters per token, and only the chains' mean length depends on it.
CHARACTERS_PER_TOKEN = 4
# The chain that starts at the start of the corpus, before any chosen document.
FIRST_CHAIN = "corpus-start"


def packed_record(specs, tokens: list[int], seq_len: int, shard: int) -> Records:
    """One framed ``packed`` record of ``tokens`` ([CLS] ... ), zero-padded to ``seq_len``, segment ids 0."""
    padding = [0] * (seq_len - len(tokens))
    values = {"input_ids": tokens + padding, "input_mask": [1] * len(tokens) + padding, "segment_ids": [0] * seq_len}
    return Records(shard, frame_record(encode_example(specs, values)), np.array([len(tokens)]))


def starts_chain(document: Document, config: DataConfig) -> bool:
    """Whether ``document`` (as read, before normalisation) starts a chain of the stream.

    A function of the document and the seed only: the probability grows with its length, so chains
    hold about the same amount of text whatever the documents' sizes.
    """
    characters = sum(map(len, document.lines))
    probability = characters / (CHAIN_SEQUENCES * config.seq_len * CHARACTERS_PER_TOKEN)
    return stable_hash(config.seed, document.digest, "chain") < probability * 2.0 ** 64


class StreamPacker:
    """Packs one read unit's chains into ``packed`` records, streaming.

    Call :meth:`mark` with every document of the unit in order as it is read, :meth:`add` with the
    unit's tokenized documents as the tokenizer returns them (in the same order, those without
    tokens left out), then :meth:`finish` with the tokenized documents read on past the unit.

    Args:
        config: the data config (seq_len, seed).
        special: special token ids.
        shards: number of output shards.
        first_unit: the unit is the corpus's first: it starts inside the first chain.
    """

    def __init__(self, config: DataConfig, special: SpecialIds, shards: int, first_unit: bool) -> None:
        self._config, self._special, self._shards = config, special, shards
        self._specs = feature_specs("packed", config.seq_len, config.max_predictions)
        # (ordinal, digest) of the marked chain starts that the tokenized documents have not reached yet
        self._starts: collections.deque[tuple[int, str]] = collections.deque()
        self._chain: str | None = FIRST_CHAIN if first_unit else None
        self._number = 0
        self._buffer: list[int] = [special.cls]

    def mark(self, document: Document) -> None:
        """Notes whether a document of the unit starts a chain (call in reading order)."""
        if starts_chain(document, self._config):
            self._starts.append((document.ordinal, document.digest))

    def add(self, document: TokenizedDocument) -> Iterator[Records]:
        """Packs a tokenized document of the unit; yields the records it completes."""
        yield from self._reach(document.ordinal)
        if self._chain is not None:
            yield from self._extend(document)

    def finish(self, read_on: Iterable[TokenizedDocument]) -> Iterator[Records]:
        """Ends the unit: packs the documents read on past it (those before the next chain start),
        then pads and yields the chain's last sequence."""
        yield from self._reach(None)
        if self._chain is not None:
            for document in read_on:
                yield from self._extend(document)
            yield from self._close()

    def _reach(self, ordinal: int | None) -> Iterator[Records]:
        """Starts the chains of every marked document up to ``ordinal`` (all, for None); one whose
        text had no tokens still starts its chain, as it does in any other split of the input."""
        while self._starts and (ordinal is None or self._starts[0][0] <= ordinal):
            _, digest = self._starts.popleft()
            yield from self._close()
            self._chain, self._number = digest, 0

    def _extend(self, document: TokenizedDocument) -> Iterator[Records]:
        stream = [token for sentence in document.sentences for token in sentence]
        stream.append(self._special.sep)
        start, seq_len = 0, self._config.seq_len
        while start < len(stream):
            take = seq_len - len(self._buffer)
            self._buffer += stream[start:start + take]
            start += take
            if len(self._buffer) == seq_len:
                yield self._emit()

    def _close(self) -> Iterator[Records]:
        if self._chain is not None and len(self._buffer) > 1:
            yield self._emit()
        self._chain = None

    def _emit(self) -> Records:
        shard = stable_hash(self._config.seed, self._chain, self._number) % self._shards
        record = packed_record(self._specs, self._buffer, self._config.seq_len, shard)
        self._number += 1
        self._buffer = [self._special.cls]
        return record


class DocumentPacker:
    """``document`` packing: each document cut on its own into full-length ``[CLS] ... [SEP]``
    sequences (only its last one shorter), unmasked, segment ids 0; a sequence's shard is a seeded
    hash of (its document, its number in the document)."""

    def __init__(self, config: DataConfig, special: SpecialIds, shards: int) -> None:
        self._config, self._special, self._shards = config, special, shards
        self._specs = feature_specs("packed", config.seq_len, config.max_predictions)

    def mark(self, document: Document) -> None:
        """Nothing to note: every document is packed by its own unit."""

    def add(self, document: TokenizedDocument) -> Iterator[Records]:
        stream = [token for sentence in document.sentences for token in sentence]
        seq_len, body = self._config.seq_len, self._config.seq_len - 2
        for number, start in enumerate(range(0, len(stream), body)):
            tokens = [self._special.cls, *stream[start:start + body], self._special.sep]
            shard = stable_hash(self._config.seed, document.digest, 0, number) % self._shards
            yield packed_record(self._specs, tokens, seq_len, shard)

    def finish(self, read_on: Iterable[TokenizedDocument]) -> Iterator[Records]:
        """Nothing is left over at the end of a unit (``read_on`` is never read)."""
        return iter(())
