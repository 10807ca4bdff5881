"""Pre-training and fine-tuning turn the same text into the same WordPiece ids."""

from __future__ import annotations

import pathlib

import pytest

from pipeline.finetune import data as finetune_data

TEXTS = [
    "The CAFÉ in Zürich serves crème brûlée; García Bernal's naïve cliché.",  # accents
    "Wait... what?! (Really) -- yes, \"quoted\" & done: 3.5% [ok] {fine} #1 @home.",  # punctuation
    "我们在北京吃饭 today, and 東京 tomorrow.",  # CJK ideographs, one word each
    "The zorblaxian ☃☃☃ glyphs were unreadable.",  # an unknown word: [UNK]
    "Tab\tseparated\u200bzero width. A second sentence follows here!",  # control/format chars, two sentences
]


def _assert_pretraining_gives(tokens: list[str], expected: list[tuple[int, ...]]) -> None:
    """Runs each text through the Beam job's per-document steps (normalize -> split into sentences ->
    batched tokenize, as ``beam_jobs.units`` chains them) and checks the ids (a text's sentences end
    to end) against ``expected``."""
    from beam_jobs.normalize import normalize_document, split_document
    from beam_jobs.records import Document, Stats
    from beam_jobs.tokenize import BatchTokenizer

    tokenizer, stats = BatchTokenizer(tokens, batch_sentences=2), Stats()
    tokenized = []
    for ordinal, text in enumerate(TEXTS):
        document = split_document(normalize_document(Document(0, ordinal, f"d{ordinal}", (text,)), True))
        tokenized.extend(tokenizer.add(document, stats))
    tokenized.extend(tokenizer.flush(stats))
    ids = [(document.ordinal, tuple(piece for sentence in document.sentences for piece in sentence))
           for document in tokenized]
    assert ids == list(enumerate(expected))


def test_finetuning_gets_the_ids_pretraining_gets(vocab_path):
    tokens = pathlib.Path(vocab_path).read_text(encoding="utf-8").splitlines()
    finetuning = finetune_data.Tokenizer(vocab_path).pieces(TEXTS)
    assert tokens.index("[UNK]") in finetuning[3]  # the test does cover an unknown word
    assert [tokens[piece] for piece in finetuning[0][:3]] == ["the", "cafe", "in"]  # accents stripped
    _assert_pretraining_gives(tokens, [tuple(ids) for ids in finetuning])


@pytest.mark.parametrize("seq_len", [8, 64])
def test_packing_is_unchanged_cls_pieces_sep(vocab_path, seq_len):
    tokenizer = finetune_data.Tokenizer(vocab_path)
    example = finetune_data.Example(text_a=TEXTS[0], text_b=None, label=1, idx=0)
    encoded = tokenizer.encode([example], seq_len, regression=False)
    pieces = tokenizer.pieces([TEXTS[0]])[0][: seq_len - 2]
    assert encoded.token_ids[0].tolist() == [tokenizer.cls_id, *pieces, tokenizer.sep_id]
    assert encoded.segment_ids[0].tolist() == [0] * (len(pieces) + 2)
