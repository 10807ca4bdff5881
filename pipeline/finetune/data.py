"""Fine-tuning input: task examples -> WordPiece ids -> length-bucketed, padded batches.

Texts are tokenised with the checkpoint's own ``vocab.txt`` by pre-training's tokenizer
(``beam_jobs.wordpiece``: BERT normalisation and tf-text's FastWordpieceTokenizer), then packed as
BERT packs them: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with segment ids
0 for the first part and 1 for the second, the longer text cut first until the
pair fits ``seq_len``.

Batches are padded to the longest row in the batch rounded up to
``PAD_MULTIPLE``, not to ``seq_len``: most task sentences are far shorter than
the limit, and attention and feed-forward cost grow with the padded length. To
make the rows of a batch similar in length, training batches are cut from
windows of ``BUCKET_WINDOW`` batches sorted by length (the order of the windows
and of the batches stays random each epoch) -- the dynamic length bucketing TF
Model Garden uses, with a handful of distinct shapes so compiled steps are reused.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Sequence

import numpy as np

from beam_jobs import features, wordpiece
from configs.errors import TrimbertError
from pipeline.finetune.tasks import Example

PAD_MULTIPLE = 16  # padded lengths are multiples of this: few distinct shapes to trace and compile
BUCKET_WINDOW = 50  # batches sorted together; large enough for similar lengths, small enough to stay random


@dataclasses.dataclass(frozen=True)
class EncodedExamples:
    """Packed, unpadded examples of one split.

    Args:
        token_ids: per example, int32 [L_i] with L_i <= seq_len, [CLS]/[SEP] included.
        segment_ids: per example, int32 [L_i], 0 for the first text, 1 for the second.
        labels: [N] int64 class indices or float32 scores; ``None`` if the split is unlabelled.
        indices: [N] the examples' ``idx`` (what a GLUE submission echoes).
        pad_id: the vocabulary's [PAD] id.
        truncated: how many examples were cut to fit ``seq_len`` (their packed length exceeded it).
    """

    token_ids: list[np.ndarray]
    segment_ids: list[np.ndarray]
    labels: np.ndarray | None
    indices: np.ndarray
    pad_id: int
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(row) for row in self.token_ids], dtype=np.int64)


class Tokenizer:
    """The checkpoint's WordPiece vocabulary, with BERT's single-text and pair packing.

    Text becomes ids exactly as pre-training tokenizes it (``beam_jobs.wordpiece``: the same
    normalisation and FastWordpieceTokenizer), so a word has the ids the encoder learned.

    Args:
        vocabulary_path: the model's ``vocab.txt``.
        lowercase: lower-case (and strip accents) first, for uncased vocabularies.
    """

    def __init__(self, vocabulary_path: str | pathlib.Path, lowercase: bool = True):
        import storage

        self.vocabulary_path = vocabulary_path
        if not storage.isfile(vocabulary_path):
            raise TrimbertError(f"vocabulary not found: {vocabulary_path}")
        tokens = storage.read_text(vocabulary_path).splitlines()  # as pre-training reads it
        special = features.special_token_ids(tokens)
        missing = [token for token in ("[CLS]", "[SEP]", "[PAD]", "[UNK]") if token not in special]
        if missing:
            raise TrimbertError(f"vocabulary {vocabulary_path} lacks {', '.join(missing)}")
        self._tokenizer = wordpiece.build_tokenizer(tokens)
        self.lowercase = lowercase
        self.cls_id, self.sep_id, self.pad_id = special["[CLS]"], special["[SEP]"], special["[PAD]"]
        self.tokens = tokens  # the vocabulary, one token per id
        self.vocabulary_size = len(tokens)

    def pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each text, no special tokens (one batched TensorFlow call)."""
        return wordpiece.encode_texts(self._tokenizer, texts, self.lowercase)

    def encode(self, examples: Sequence[Example], seq_len: int, regression: bool) -> EncodedExamples:
        """Packs a split's examples for the encoder.

        Args:
            examples: one split of a task (all single texts or all pairs).
            seq_len: T, the most tokens per example, special tokens included.
            regression: labels are float scores (STS-B), not class indices.
        """
        if not examples:
            raise TrimbertError("no examples to encode")
        first = self.pieces([example.text_a for example in examples])
        is_pair = examples[0].text_b is not None
        second = self.pieces([example.text_b or "" for example in examples]) if is_pair else None
        token_ids, segment_ids = [], []
        truncated = 0
        for row, pieces_a in enumerate(first):
            pieces_b = second[row] if second is not None else None
            pieces = len(pieces_a) + len(pieces_b or ())
            pieces_a, pieces_b = truncate(pieces_a, pieces_b, seq_len)
            truncated += len(pieces_a) + len(pieces_b or ()) < pieces
            tokens = [self.cls_id, *pieces_a, self.sep_id]
            segments = [0] * len(tokens)
            if pieces_b is not None:
                tokens += [*pieces_b, self.sep_id]
                segments += [1] * (len(pieces_b) + 1)
            token_ids.append(np.array(tokens, dtype=np.int32))
            segment_ids.append(np.array(segments, dtype=np.int32))
        labelled = all(example.label is not None for example in examples)
        labels = None
        if labelled:
            labels = np.array([example.label for example in examples],
                              dtype=np.float32 if regression else np.int64)
        return EncodedExamples(token_ids, segment_ids, labels,
                               np.array([example.idx for example in examples], dtype=np.int64), self.pad_id,
                               truncated)


def truncate(pieces_a: list[int], pieces_b: list[int] | None, seq_len: int) -> tuple[list[int], list[int] | None]:
    """Cuts tokens off the end of the longer text until the packed example fits ``seq_len``.

    Args:
        pieces_a: the first text's WordPiece ids.
        pieces_b: the second text's, or ``None`` for a single text.
        seq_len: T including [CLS] and one [SEP] per text.
    """
    if pieces_b is None:
        return pieces_a[: max(seq_len - 2, 0)], None
    budget = seq_len - 3
    if budget < 2:
        raise TrimbertError(f"seq_len {seq_len} leaves no room for a sentence pair")
    length_a, length_b = len(pieces_a), len(pieces_b)
    while length_a + length_b > budget:
        if length_a > length_b:
            length_a -= 1
        else:
            length_b -= 1
    return pieces_a[:length_a], pieces_b[:length_b]


def subsample(examples: list[Example], limit: int | None, seed: int = 0) -> list[Example]:
    """A fixed random subset of at most ``limit`` examples (the same for every fine-tuning seed).

    Args:
        examples: the full training split.
        limit: the most to keep; ``None`` keeps all.
        seed: the subset's seed; fixed so seeds differ only in initialisation and order.
    """
    if limit is None or limit >= len(examples):
        return examples
    chosen = np.sort(np.random.default_rng(seed).permutation(len(examples))[:limit])
    return [examples[index] for index in chosen]


@dataclasses.dataclass(frozen=True)
class Batch:
    """One padded batch.

    Args:
        inputs: ``token_ids``, ``segment_ids``, ``padding_mask``: int32 [B, T_batch].
        labels: [B] (or [B, 1] for regression) when the split is labelled, else ``None``.
        positions: [B] row numbers of the examples in their :class:`EncodedExamples`.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    positions: np.ndarray


def pad_batch(encoded: EncodedExamples, positions: np.ndarray, regression: bool,
              length: int | None = None) -> Batch:
    """Pads the chosen rows to their longest length rounded up to ``PAD_MULTIPLE`` (or to ``length``).

    Args:
        encoded: a split's packed examples.
        positions: the rows to put in this batch.
        regression: give labels shape [B, 1] to match a one-unit regression head.
        length: pad to exactly this many tokens (latency measurement at the task's ``seq_len``).
    """
    longest = max(len(encoded.token_ids[row]) for row in positions)
    padded = length or int(np.ceil(longest / PAD_MULTIPLE) * PAD_MULTIPLE)
    token_ids = np.full((len(positions), padded), encoded.pad_id, dtype=np.int32)  # [B, T]
    segment_ids = np.zeros((len(positions), padded), dtype=np.int32)  # [B, T]
    padding_mask = np.zeros((len(positions), padded), dtype=np.int32)  # [B, T]
    for slot, row in enumerate(positions):
        tokens = encoded.token_ids[row][:padded]
        token_ids[slot, : len(tokens)] = tokens
        segment_ids[slot, : len(tokens)] = encoded.segment_ids[row][: len(tokens)]
        padding_mask[slot, : len(tokens)] = 1
    labels = None
    if encoded.labels is not None:
        labels = encoded.labels[positions]
        labels = labels[:, None] if regression else labels
    return Batch({"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
                 labels, np.asarray(positions))


def training_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches: shuffled, then sorted by length within windows, in random batch order.

    Args:
        lengths: [N] packed length of each example.
        batch_size: rows per batch (the last batch may be smaller).
        rng: the seed's generator (its state advances: every epoch is ordered differently).
    """
    order = rng.permutation(len(lengths))
    window = batch_size * BUCKET_WINDOW
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[offset:offset + batch_size] for offset in range(0, len(chunk), batch_size)]
    return [batches[index] for index in rng.permutation(len(batches))]


def inference_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of rows sorted by length (least padding); predictions are put back by position."""
    order = np.argsort(lengths, kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def training_batches(encoded: EncodedExamples, batch_size: int, epochs: int, steps_per_epoch: int,
                     seed: int, regression: bool) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """(inputs, labels) for ``epochs`` x ``steps_per_epoch`` steps, reshuffled each pass over the data.

    Args:
        encoded: the labelled training split.
        batch_size: rows per batch.
        epochs: rounds of ``steps_per_epoch`` steps (Keras epochs).
        steps_per_epoch: steps per round; a round may span a partial or extra pass over the data.
        seed: the fine-tuning seed (shuffling).
        regression: labels shaped [B, 1].
    """
    if encoded.labels is None:
        raise TrimbertError("the training split has no labels")
    rng = np.random.default_rng(seed)
    lengths = encoded.lengths
    pending: list[np.ndarray] = []
    for _ in range(epochs * steps_per_epoch):
        if not pending:
            pending = training_order(lengths, batch_size, rng)
        batch = pad_batch(encoded, pending.pop(0), regression)
        yield batch.inputs, batch.labels
