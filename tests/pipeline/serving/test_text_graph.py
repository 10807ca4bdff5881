"""The in-graph text -> ids of a served model equal the Python path's (normalize_line, FastWordpiece, encode, pad)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import wordpiece
from configs.errors import TrimbertError
from pipeline.finetune import data
from pipeline.finetune.tasks import Example
from pipeline.serving import text_graph

LONG = " ".join(f"word{index} Çà et là" for index in range(400))
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "ThIs Is MiXeD CaSe, with punctuation: (yes!) -- 'quotes' & 3.5% [ok] {fine} #1 @home.",
    "Café Crème in Zürich: crème brûlée, naïve cliché, García, Ångström, ß.",
    "İstanbul ve IĞDIR; ΟΔΟΣ ΚΑΙ ΣΟΦΙΑ; Москва.",  # multi-letter lower-case, final sigma, Cyrillic
    "我爱北京天安门 and 東京タワーへ行く, 한국어 텍스트.",  # CJK ideographs spaced, kana and hangul not
    "control\x00chars\x01here\x7f and\x1fthere",
    "tab\tnew\nline\rcarriage\x0bvt\x0cff",  # ASCII: VT and FF become spaces
    "é\x0bx\x0cy\tz\x85w",  # not ASCII: VT, FF and NEL are dropped
    "zero\u200bwidth\ufeffbom soft\u00adhyphen nb\u00a0sp ideo\u3000space",
    "\u2028 line separators at both ends \u2029",
    "I love 🍕 and 👍🏽! 🇫🇷",
    "",
    "   ",
    "\t\x00 \x0b",
    LONG,
    "x" * 150 + " supercalifragilisticexpialidocious" * 3,  # a word over 100 bytes: [UNK]
    "हिन्दी और العربية",
    "Vithkuqi \U00010570\U00010571 and Unicode 16 \U000105C9\U00016121",
    "replacement \ufffd char and private \ue000 use",
]
PAIRS = list(zip(TEXTS, reversed(TEXTS), strict=True)) + [(LONG, "short"), ("short", LONG), (LONG, LONG), ("", "")]


@pytest.fixture(scope="module")
def tokens(vocab_path):
    return pathlib.Path(vocab_path).read_text(encoding="utf-8").splitlines()


def _python_inputs(vocab_path, examples, lowercase, seq_len):
    """The fine-tuning path: ``Tokenizer.encode`` then ``pad_batch`` to exactly ``seq_len``."""
    encoded = data.Tokenizer(vocab_path, lowercase).encode(examples, seq_len, regression=False)
    return data.pad_batch(encoded, np.arange(len(examples)), regression=False, length=seq_len).inputs


def _graph_inputs(tokens, lowercase, seq_len, first, second=None):
    graph = text_graph.TextToIds(tokens, lowercase, seq_len, pair=second is not None)
    run = tf.function(lambda a, b=None: graph(a, b))
    got = run(tf.constant(first)) if second is None else run(tf.constant(first), tf.constant(second))
    return {name: value.numpy() for name, value in got.items()}


def _normalization_mismatches(tokens, lowercase, context) -> dict[int, tuple[str, str]]:
    """Code point ``c`` -> (``normalize_line``, graph) for each ``context.format(c)`` they normalise differently."""
    chars = [chr(code) for code in range(sys.maxunicode + 1) if not 0xD800 <= code <= 0xDFFF]
    texts = [context.format(char) for char in chars]
    graph = text_graph.TextToIds(tokens, lowercase, 8, pair=False)
    got = tf.function(graph.normalize)(tf.constant([text.encode() for text in texts])).numpy()
    pairs = ((ord(char), wordpiece.normalize_line(text, lowercase), out.decode())
             for char, text, out in zip(chars, texts, got, strict=True))
    return {code: (want, out) for code, want, out in pairs if want != out}


@pytest.mark.parametrize("lowercase", [True, False])
def test_normalization_matches_python_on_every_code_point(tokens, lowercase):
    wrong = _normalization_mismatches(tokens, lowercase, "a{}b")
    assert set(wrong) == (set(text_graph.NFD_UNMATCHED) if lowercase else set())
    graph = text_graph.TextToIds(tokens, lowercase, 8, pair=False)
    ascii_texts = [f"A{chr(code)}b " for code in range(128)]
    got = graph.normalize(tf.constant(ascii_texts)).numpy()
    assert [out.decode() for out in got] == [wordpiece.normalize_line(text, lowercase) for text in ascii_texts]


def test_final_sigma_differs_only_as_sigma_next_to_unicode_14_letters(tokens):
    wrong = _normalization_mismatches(tokens, True, "aΣ{}Σ")
    sigma_only = {code for code, (want, got) in wrong.items() if want.replace("ς", "σ") == got.replace("ς", "σ")}
    assert set(wrong) - sigma_only <= set(text_graph.NFD_UNMATCHED)
    assert len(sigma_only) == 301


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("seq_len", [8, 64])
def test_single_text_ids_match_the_python_path(vocab_path, tokens, lowercase, seq_len):
    expected = _python_inputs(vocab_path, [Example(text, None, None, i) for i, text in enumerate(TEXTS)],
                              lowercase, seq_len)
    got = _graph_inputs(tokens, lowercase, seq_len, TEXTS)
    for name in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
        assert got[name].dtype == np.int32 and got[name].shape == (len(TEXTS), seq_len)


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("seq_len", [5, 12, 128])
def test_pair_ids_match_the_python_path(vocab_path, tokens, lowercase, seq_len):
    examples = [Example(a, b, None, i) for i, (a, b) in enumerate(PAIRS)]
    expected = _python_inputs(vocab_path, examples, lowercase, seq_len)
    got = _graph_inputs(tokens, lowercase, seq_len, [a for a, _ in PAIRS], [b for _, b in PAIRS])
    for name in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_the_unmatched_characters_still_get_the_python_ids(vocab_path, tokens):
    texts = [f"x{chr(code)}y and {chr(code)}" for code in text_graph.NFD_UNMATCHED]
    expected = _python_inputs(vocab_path, [Example(text, None, None, i) for i, text in enumerate(texts)], True, 16)
    np.testing.assert_array_equal(_graph_inputs(tokens, True, 16, texts)["token_ids"], expected["token_ids"])


def test_invalid_utf8_is_replaced_then_dropped(tokens):
    raw = [b"caf\xe9 au lait", b"\xff\xfe ok \xc3", b"fine"]
    graph = text_graph.TextToIds(tokens, True, 16, pair=False)
    got = [out.decode() for out in graph.normalize(tf.constant(raw)).numpy()]
    assert got == [wordpiece.normalize_line(text.decode("utf-8", errors="replace"), True) for text in raw]


def test_closed_form_truncation_equals_truncate():
    for seq_len in range(5, 26):
        lengths = np.arange(0, 31)
        length_a, length_b = (grid.ravel() for grid in np.meshgrid(lengths, lengths, indexing="ij"))
        kept_a, kept_b = (np.asarray(kept) for kept in text_graph.truncated_lengths(
            tf.constant(length_a), tf.constant(length_b), seq_len, True))
        single = np.asarray(text_graph.truncated_lengths(tf.constant(length_a), None, seq_len, False)[0])
        for row, (a, b) in enumerate(zip(length_a, length_b, strict=True)):
            want_a, want_b = data.truncate(list(range(a)), list(range(b)), seq_len)
            assert (int(kept_a[row]), int(kept_b[row])) == (len(want_a), len(want_b)), (seq_len, a, b)
            assert int(single[row]) == len(data.truncate(list(range(a)), None, seq_len)[0])


def test_bad_arguments_are_refused(tokens):
    with pytest.raises(TrimbertError, match=r"lacks \[CLS\], \[PAD\]"):
        text_graph.TextToIds(["[SEP]", "[UNK]", "a"], True, 16, pair=False)
    with pytest.raises(TrimbertError, match="seq_len 4 leaves no room for a sentence pair"):
        text_graph.TextToIds(tokens, True, 4, pair=True)
    graph = text_graph.TextToIds(tokens, True, 16, pair=True)
    with pytest.raises(TrimbertError, match="needs text_pair"):
        graph(tf.constant(["a"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="text and text_pair must hold as many strings"):
        graph(tf.constant(["a", "b", "c"]), tf.constant(["x"]))
