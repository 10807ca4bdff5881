"""Google's sentence-pair step of the ``bert`` format, as token offsets: which tokens each instance
holds, with no token copied (``beam_jobs.masking`` gathers and masks a whole batch at once).

For each pass, a document is cut into chunks of sentences up to a target length (a random shorter
one with ``short_seq_prob``); each chunk becomes segment A (its first 1 .. n-1 sentences) and B,
where B is the rest of the chunk or, half the time and always for a one-sentence chunk, a run of
sentences from a random other document (the unused sentences then start the next chunk). The
pair is truncated as Google does, one token at a time from the longer segment, from its front or
back at random; only the counts are computed here (see :func:`trims`) and the front/back choices are
drawn as one coin per trimmed token.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Sequence
from typing import NamedTuple

RANDOM_DOCUMENT_TRIES = 10
# Uniform integers are drawn as int(random() * n): a fraction of the cost of randint, and for the
# ranges here (below 2**20) as uniform to within 2**-33.


class Pair(NamedTuple):
    """One instance before masking.

    Args:
        a_start, a_length: segment A, as offsets into the document's tokens end to end.
        source: where segment B comes from: -1 the document, else an index into the pool.
        b_start, b_length: segment B, as offsets into its source's tokens end to end.
        is_random_next: segment B comes from another document.
        key: 64 random bits; seed of the instance's masking draws and of its shard.
    """

    a_start: int
    a_length: int
    source: int
    b_start: int
    b_length: int
    is_random_next: bool
    key: int


def trims(a_length: int, b_length: int, max_tokens: int) -> tuple[int, int]:
    """Tokens Google's truncation removes from A and from B: while the pair is too long, one from the
    longer segment (from B when they are equal)."""
    excess = a_length + b_length - max_tokens
    if excess <= 0:
        return 0, 0
    trim_a = min(excess, max(0, a_length - b_length))
    trim_b = min(excess, max(0, b_length - a_length))
    rest = excess - trim_a - trim_b
    return trim_a + rest // 2, trim_b + (rest + 1) // 2


def plan_pairs(starts: Sequence[int], digest: str, pool_starts: Sequence[Sequence[int]],
               pool_digests: Sequence[str], rng: random.Random, seq_len: int, short_seq_prob: float) -> list[Pair]:
    """The instances of one pass over one document.

    Args:
        starts: where each sentence of the document starts in its tokens end to end, and the total
            (``len(sentences) + 1`` values).
        digest: the document's digest (a random document must have another).
        pool_starts: ``starts`` of each pool document.
        pool_digests: digest of each pool document.
        rng: the pass's generator.
        seq_len: tokens per instance with [CLS] and two [SEP]s.
        short_seq_prob: probability of a random shorter target length.
    """
    max_tokens = seq_len - 3
    target = max_tokens
    if rng.random() < short_seq_prob:
        target = 2 + int(rng.random() * (max_tokens - 1))
    sentences = len(starts) - 1
    pairs: list[Pair] = []
    first = index = 0
    while index < sentences:
        if index == sentences - 1 or starts[index + 1] - starts[first] >= target:
            count = index + 1 - first
            a_end = first + (1 + int(rng.random() * (count - 1)) if count >= 2 else 1)
            a_start, a_length = starts[first], starts[a_end] - starts[first]
            is_random_next = count == 1 or rng.random() < 0.5
            if is_random_next:
                source = _random_document(pool_digests, digest, rng)
                other = starts if source < 0 else pool_starts[source]
                start = int(rng.random() * (len(other) - 1))
                # Whole sentences from `start` until B reaches target - len(A) tokens (at least one).
                end = min(bisect_left(other, other[start] + target - a_length, start + 1), len(other) - 1)
                b_start, b_length = other[start], other[end] - other[start]
                index = a_end - 1  # the unused sentences start the next chunk
            else:
                source, b_start, b_length = -1, starts[a_end], starts[index + 1] - starts[a_end]
            if a_length + b_length > max_tokens:
                trim_a, trim_b = trims(a_length, b_length, max_tokens)
                # Each trimmed token is taken from the front or the back with probability 1/2.
                a_start += rng.getrandbits(trim_a).bit_count()
                b_start += rng.getrandbits(trim_b).bit_count()
                a_length, b_length = a_length - trim_a, b_length - trim_b
            if a_length and b_length:
                pairs.append(Pair(a_start, a_length, source, b_start, b_length, is_random_next, rng.getrandbits(64)))
            first = index + 1
        index += 1
    return pairs


def _random_document(digests: Sequence[str], digest: str, rng: random.Random) -> int:
    # As Google: up to 10 tries to find a different document, else the last one drawn.
    if not digests:
        return -1
    for _ in range(RANDOM_DOCUMENT_TRIES):
        other = int(rng.random() * len(digests))
        if digests[other] != digest:
            return other
    return other
