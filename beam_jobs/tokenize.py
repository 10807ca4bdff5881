"""WordPiece tokenization with tensorflow-text's FastWordpieceTokenizer, batched per worker.

The tokenizer and the text -> ids step are ``beam_jobs.wordpiece``'s, which fine-tuning uses too.

The tokenizer is built once per worker (in ``DoFn.setup`` of the job's unit step) and applied to
batches of sentences from many documents at once (one TensorFlow call per ``batch_sentences``
sentences): per-call overhead is what makes naive per-line tokenization slow.
"""

from __future__ import annotations

import logging
import os
import time

from beam_jobs.features import SPECIAL_TOKENS, special_token_ids
from beam_jobs.quiet_tensorflow import import_tensorflow_quietly
from beam_jobs.records import Document, Stats, TokenizedDocument
from beam_jobs.wordpiece import build_tokenizer, tokenize_normalized
from configs.errors import TrimbertError

BATCH_SENTENCES = 4096
PROGRESS_SECONDS = 30.0


def read_vocabulary(path: str) -> list[str]:
    """Reads a ``vocab.txt`` (one token per line) and checks the special tokens are present.

    Args:
        path: local or remote (gs://...) vocabulary file.

    Raises:
        TrimbertError: the file is missing or unreadable, or lacks a special token.
    """
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as handle:
            tokens = handle.read().decode("utf-8").splitlines()
    except Exception as error:
        raise TrimbertError(f"vocabulary cannot be read: {path} ({error})") from error
    missing = [token for token in SPECIAL_TOKENS if token not in special_token_ids(tokens)]
    if missing:
        raise TrimbertError(f"vocabulary {path} lacks the special tokens {', '.join(missing)}")
    return tokens


def limit_tensorflow_threads() -> None:
    """One TensorFlow thread per Beam worker: the runner already runs one worker per core."""
    tf = import_tensorflow_quietly()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as error:
        # TensorFlow was already initialised in this process (e.g. the in-process runner): the
        # pools cannot change now. Tokenizing still works, but each worker may use every core,
        # which oversubscribes the machine; say so instead of hiding it.
        logging.getLogger(__name__).warning(
            "tokenizer threads not limited to 1 (%s); TensorFlow keeps intra-op %d, inter-op %d "
            "threads (0 = one per core)", error, tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())


class BatchTokenizer:
    """Tokenizes documents in batches of about ``batch_sentences`` sentences, counting into a Stats.

    Plain Python, so the job's per-unit step can batch inside one ``process`` call and flush at the
    end of its unit (what ``finish_bundle`` emits is dropped by runners such as Dask).
    """

    def __init__(self, tokens: list[str], batch_sentences: int = BATCH_SENTENCES) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        limit_tensorflow_threads()
        self._tokenizer = build_tokenizer(tokens)
        self._unknown_id = tokens.index("[UNK]")
        self._batch_sentences = batch_sentences
        self._pending: list[Document] = []
        self._pending_sentences = 0
        self._tokens_done = 0
        self._started = self._last_log = time.monotonic()

    def add(self, document: Document, stats: Stats):
        """Queues a document; yields the tokenized batch once it holds enough sentences."""
        self._pending.append(document)
        self._pending_sentences += len(document.lines)
        if self._pending_sentences >= self._batch_sentences:
            yield from self.flush(stats)

    def flush(self, stats: Stats):
        """Yields every queued document, tokenized, in the order queued (none without tokens)."""
        if not self._pending:
            return
        sentences = [line for document in self._pending for line in document.lines]
        flat, splits = tokenize_normalized(self._tokenizer, sentences)
        ids = flat.tolist()
        stats["unknown_tokens"] += int((flat == self._unknown_id).sum())
        stats["tokens"] += len(ids)
        self._tokens_done += len(ids)
        row = 0
        for document in self._pending:
            pieces = []
            for _ in document.lines:
                start, end = splits[row], splits[row + 1]
                row += 1
                if end > start:
                    pieces.append(tuple(ids[start:end]))
            if pieces:
                yield TokenizedDocument(document.unit, document.ordinal, document.digest, tuple(pieces))
            else:
                stats["skipped_documents.no_tokens"] += 1
        self._pending, self._pending_sentences = [], 0
        if time.monotonic() - self._last_log > PROGRESS_SECONDS:
            self._last_log = time.monotonic()
            elapsed = self._last_log - self._started
            logging.info("preprocess: worker %d tokenized %d tokens (%.0f tokens/s)",
                         os.getpid(), self._tokens_done, self._tokens_done / max(elapsed, 1e-9))
