"""Pre-training instances from tokenized documents: Google's ``bert`` format and ``packed``.

``bert`` follows Google's create_pretraining_data algorithm (docs/record_format.md): for each of
``dupe_factor`` passes, a document is cut into chunks up to a target length (shorter with
``short_seq_prob``); each chunk becomes segment A + B, where B is the true continuation or, half the
time, a span from a random other document (``next_sentence_labels`` = 1); 15% of the tokens are
chosen for prediction, 80% of those replaced by [MASK], 10% by a random id, 10% left unchanged.

Google draws the random document from the whole corpus held in memory. Here it is drawn from a
pool of ``pool_size`` text spans (at most ``POOL_CHARACTERS`` each), one from each of the documents
with the smallest seeded hash of their content: a uniform random sample of the corpus, found by a
bounded ``Top`` combine in a first, cheap read pass (no tokenization), so memory does not grow with
the corpus.

Every random choice comes from a generator seeded by (seed, document digest, pass), so the output
is a function of the seed and the input only, whatever order Beam processes documents in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

import apache_beam as beam
from apache_beam.transforms.combiners import TopCombineFn

from beam_jobs.features import BertExampleEncoder, encode_example, feature_specs, special_token_ids
from beam_jobs.records import Document, TokenizedDocument, stable_hash
from configs.schema import DataConfig

POOL_SIZE = 2048
# Characters of text kept per pool document: about 600 WordPiece tokens of English, enough for a
# segment B at seq_len 512, and a bound on memory even when a whole document is one long line.
POOL_CHARACTERS = 3000
RANDOM_DOCUMENT_TRIES = 10


class SpecialIds(NamedTuple):
    """Ids of the special tokens and the vocabulary size."""

    pad: int
    cls: int
    sep: int
    mask: int
    vocabulary_size: int

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> SpecialIds:
        ids = special_token_ids(tokens)
        return cls(ids["[PAD]"], ids["[CLS]"], ids["[SEP]"], ids["[MASK]"], len(tokens))


class Instance(NamedTuple):
    """One encoded record and where it goes.

    Args:
        shard: output shard index.
        unit: read unit of the source document (orders the shard).
        ordinal: document ordinal inside the unit.
        payload: serialized ``tf.train.Example``.
        length: real (non-padding) tokens in the record.
    """

    shard: int
    unit: int
    ordinal: int
    payload: bytes
    length: int


def truncate_pair(tokens_a: list[int], tokens_b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Trims the longer segment, from the front or back at random, until both fit (in place)."""
    while len(tokens_a) + len(tokens_b) > max_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def mask_tokens(tokens: list[int], candidates: Sequence[int], config: DataConfig, special: SpecialIds,
                rng: random.Random):
    """Static masking; returns (masked tokens, sorted positions, original ids).

    Args:
        tokens: the full sequence with [CLS]/[SEP], unpadded.
        candidates: the positions that may be masked (every one but [CLS] and the [SEP]s).
        config: masked_lm_prob, max_predictions, mask_token_rate, random_token_rate.
        special: special token ids and vocabulary size (random replacements are any id).
        rng: the instance's generator.
    """
    count = min(config.max_predictions, max(1, int(round(len(tokens) * config.masked_lm_prob))))
    # A uniform random subset of the candidates, as Google's shuffle-and-take, but drawing `count`
    # numbers instead of one per token: the shuffle was the largest cost of building a record.
    chosen = sorted(rng.sample(candidates, min(count, len(candidates))))
    output = list(tokens)
    replace_below = config.mask_token_rate + config.random_token_rate
    for position in chosen:
        draw = rng.random()
        if draw < config.mask_token_rate:
            output[position] = special.mask
        elif draw < replace_below:
            output[position] = rng.randrange(special.vocabulary_size)
    return output, chosen, [tokens[position] for position in chosen]


def bert_examples(document: TokenizedDocument, pool: Sequence[TokenizedDocument], dupe: int,
                  config: DataConfig, special: SpecialIds, encoder: BertExampleEncoder | None = None):
    """Yields (serialized Example, real length) for one pass of one document (Google's algorithm).

    Args:
        document: the tokenized document.
        pool: random-document spans, in a fixed order (sorted by seeded hash).
        dupe: the pass index, 0 .. dupe_factor-1.
        config: the data config (seq_len, masking rates, short_seq_prob, seed).
        special: special token ids.
        encoder: the record encoder for (seq_len, max_predictions), reused across calls.
    """
    encoder = encoder or BertExampleEncoder(config.seq_len, config.max_predictions)
    rng = random.Random(stable_hash(config.seed, document.digest, dupe))
    max_tokens = config.seq_len - 3
    target = max_tokens
    if rng.random() < config.short_seq_prob:
        target = rng.randint(2, max_tokens)
    sentences = document.sentences
    chunk: list[tuple[int, ...]] = []
    chunk_length = 0
    index = 0
    while index < len(sentences):
        chunk.append(sentences[index])
        chunk_length += len(sentences[index])
        if index == len(sentences) - 1 or chunk_length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [token for sentence in chunk[:a_end] for token in sentence]
            tokens_b: list[int] = []
            is_random_next = len(chunk) == 1 or rng.random() < 0.5
            if is_random_next:
                other = _random_document(pool, document, rng)
                start = rng.randint(0, len(other.sentences) - 1)
                for sentence in other.sentences[start:]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target - len(tokens_a):
                        break
                index -= len(chunk) - a_end  # the unused sentences start the next chunk
            else:
                tokens_b = [token for sentence in chunk[a_end:] for token in sentence]
            truncate_pair(tokens_a, tokens_b, max_tokens, rng)
            if tokens_a and tokens_b:
                a_length, length = len(tokens_a), len(tokens_a) + len(tokens_b) + 3
                tokens = [special.cls, *tokens_a, special.sep, *tokens_b, special.sep]
                candidates = [*range(1, a_length + 1), *range(a_length + 2, length - 1)]
                masked, positions, labels = mask_tokens(tokens, candidates, config, special, rng)
                yield encoder.encode(masked, a_length + 2, positions, labels, is_random_next), length
            chunk, chunk_length = [], 0
        index += 1


def _random_document(pool: Sequence[TokenizedDocument], document: TokenizedDocument,
                     rng: random.Random) -> TokenizedDocument:
    # As Google: up to 10 tries to find a different document, else the document itself.
    if not pool:
        return document
    for _ in range(RANDOM_DOCUMENT_TRIES):
        other = pool[rng.randint(0, len(pool) - 1)]
        if other.digest != document.digest:
            return other
    return other


def _pad(values: list, length: int, fill=0) -> list:
    return values + [fill] * (length - len(values))


def packed_examples(document: TokenizedDocument, config: DataConfig, special: SpecialIds):
    """Yields (serialized Example, real length): the document's tokens cut into full-length
    ``[CLS] ... [SEP]`` sequences (only its last one shorter), unmasked, segment ids 0."""
    specs = feature_specs("packed", config.seq_len, config.max_predictions)
    stream = [token for sentence in document.sentences for token in sentence]
    body = config.seq_len - 2
    for start in range(0, len(stream), body):
        tokens = [special.cls, *stream[start:start + body], special.sep]
        values = {
            "input_ids": _pad(tokens, config.seq_len),
            "input_mask": _pad([1] * len(tokens), config.seq_len),
            "segment_ids": [0] * config.seq_len,
        }
        yield encode_example(specs, values), len(tokens)


def build_instances(document: TokenizedDocument, config: DataConfig, special: SpecialIds, shards: int,
                    pool: Sequence[TokenizedDocument]):
    """Yields every Instance of one document: ``dupe_factor`` passes (``bert``) or one (``packed``).

    Args:
        document: the tokenized document.
        config: the data config (format, seq_len, masking, dupe_factor, seed).
        special: special token ids of the vocabulary.
        shards: number of output shards; each record's shard is a seeded hash of its identity.
        pool: for ``bert``, the random-document pool sorted by seeded hash (:func:`sort_pool`).
    """
    if config.format == "packed":
        passes = [packed_examples(document, config, special)]
    else:
        encoder = BertExampleEncoder(config.seq_len, config.max_predictions)
        passes = [bert_examples(document, pool, dupe, config, special, encoder) for dupe in range(config.dupe_factor)]
    for dupe, examples in enumerate(passes):
        for number, (payload, length) in enumerate(examples):
            shard = stable_hash(config.seed, document.digest, dupe, number) % shards
            yield Instance(shard, document.unit, document.ordinal, payload, length)


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
