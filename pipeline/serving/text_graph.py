"""Raw text -> packed encoder inputs in TensorFlow ops, the ids the Python path gives, for a SavedModel.

Fine-tuning turns text into ids in Python (``beam_jobs.wordpiece.normalize_line``, tf-text's
FastWordpieceTokenizer, ``pipeline.finetune.data.Tokenizer.encode`` and ``pad_batch``). A served
model gets raw strings, so :class:`TextToIds` redoes each step as graph ops:

* normalisation (:meth:`TextToIds.normalize`). Python takes one of two paths per line, and so does
  the graph: an all-ASCII line drops the control characters of ``wordpiece.ASCII_TABLE``, turns tab,
  LF, VT, FF and CR into spaces and lower-cases ASCII letters; any other line drops and spaces the
  characters of ``wordpiece.non_ascii_table()`` (VT and FF are dropped there), then for an uncased
  vocabulary lower-cases (ICU, as Python: ``İ`` -> ``i̇``, a final ``Σ`` -> ``ς``), decomposes (NFD)
  and drops combining marks (Mn), or for a cased one composes (NFC), and spaces out CJK ideographs
  (``wordpiece.CJK_IDEOGRAPHS``). Both end with Python's ``str.strip``. Every character class is
  built here from Python's own tables, so the graph drops, spaces and strips what this Python does.
* ICU and this Python (Unicode 14) disagree on some characters: ICU's lower-casing misses letters
  added in Unicode 14 (fixed up after it from Python's ``str.lower``, see :func:`_lowercase_fixes`),
  and ICU decomposes the 20 characters of :data:`NFD_UNMATCHED` (added after Unicode 14, unknown to
  this Python, which leaves them whole). ICU also decides between final ``ς`` and ``σ`` for a capital
  Sigma without knowing the 301 letters and marks Unicode 14 added (as cased or case-ignorable), so a
  ``Σ`` right beside one of them may become the other sigma. These two are the corners not matched as
  text (tests/pipeline/serving/test_text_graph.py pins both); the words they touch are [UNK] either
  way unless the vocabulary holds those characters.
* Invalid UTF-8 is replaced by U+FFFD (which normalisation drops), as ``bytes.decode(errors="replace")``
  followed by ``normalize_line`` would do; the Python path never sees bytes.
* WordPiece: the very tokenizer ``wordpiece.build_tokenizer`` makes (its split on whitespace and
  punctuation included).
* Packing (:func:`pack`): ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, segment ids 0 then 1, cut as
  ``data.truncate`` cuts (:func:`truncated_lengths`), padded with [PAD] to exactly ``seq_len``: fixed
  shapes for TF Serving and accelerators.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Iterable, Sequence

import tensorflow as tf
import tensorflow_text

from beam_jobs import features, wordpiece
from configs.errors import TrimbertError

# Characters ICU (tf-text's NFD) decomposes that Python 3.11's Unicode 14 tables do not know (so leave
# whole): Todhri, Tulu-Tigalari, Gurung Khema and Kirat Rai letters, all added in Unicode 16.
NFD_UNMATCHED = (0x105C9, 0x105E4, 0x11383, 0x11385, 0x1138E, 0x11391, 0x113C5, 0x113C7, 0x113C8,
                 *range(0x16121, 0x16129), 0x16D68, 0x16D69, 0x16D6A)
_ASCII_LINE = r"[\x00-\x7f]*"


def _char_class(codes: Iterable[int]) -> str:
    """An RE2 character class matching exactly ``codes`` (code point ranges as ``\\x{..}``)."""
    codes = sorted(set(codes))
    ranges, start = [], None
    for index, code in enumerate(codes):
        start = code if start is None else start
        if index + 1 == len(codes) or codes[index + 1] != code + 1:
            ranges.append(f"\\x{{{start:x}}}" if start == code else f"\\x{{{start:x}}}-\\x{{{code:x}}}")
            start = None
    return "[" + "".join(ranges) + "]"


@functools.cache
def _patterns() -> dict[str, str]:
    """The RE2 patterns of every normalisation step, from Python's tables (built once, ~1 s)."""
    table = wordpiece.non_ascii_table()
    every = range(sys.maxunicode + 1)
    strip = _char_class(code for code in every if chr(code).isspace())
    return {
        "ascii_drop": _char_class(code for code, to in wordpiece.ASCII_TABLE.items() if to is None),
        "ascii_space": _char_class(code for code, to in wordpiece.ASCII_TABLE.items() if to == " "),
        "drop": _char_class(code for code, to in table.items() if to is None),
        "space": _char_class(code for code, to in table.items() if to == " "),
        "marks": _char_class(code for code in every if unicodedata.category(chr(code)) == "Mn"),
        "strip": f"^{strip}+|{strip}+$",
        "cjk": wordpiece.CJK_IDEOGRAPHS.pattern,
    }


@functools.cache
def _lowercase_fixes() -> tuple[tuple[int, int], ...]:
    """(what ICU's lower-casing gives, what Python's ``str.lower`` gives) for single letters they disagree on.

    Python lower-cases letters added in Unicode 14 (e.g. Vithkuqi) that the ICU of ``tf.strings.lower``
    leaves unchanged. Found by lower-casing every cased letter both ways; multi-letter results (only
    ``İ``, which ICU does as Python) are not fixed up.
    """
    letters = [chr(code) for code in range(sys.maxunicode + 1)
               if not 0xD800 <= code <= 0xDFFF and chr(code).lower() != chr(code)]
    icu = tf.strings.lower([letter.encode() for letter in letters], encoding="utf-8").numpy()
    return tuple((ord(got.decode()), ord(letter.lower())) for letter, got in zip(letters, icu, strict=True)
                 if got.decode() != letter.lower() and len(got.decode()) == 1 and len(letter.lower()) == 1)


def truncated_lengths(length_a, length_b, seq_len: int, pair: bool):
    """The lengths ``data.truncate`` keeps, in closed form (int tensors or numbers, element-wise).

    Single text: ``min(a, seq_len - 2)``. Pair, budget ``n = seq_len - 3``: ``truncate`` cuts the
    longer text (b on ties) one piece at a time, so b keeps ``min(b, max(n // 2, n - a))`` and a keeps
    ``min(a, n - b')``.
    """
    if not pair:
        return tf.minimum(length_a, max(seq_len - 2, 0)), None
    budget = seq_len - 3
    kept_b = tf.minimum(length_b, tf.maximum(budget // 2, budget - length_a))
    return tf.minimum(length_a, budget - kept_b), kept_b


def pack(pieces_a: tf.RaggedTensor, pieces_b: tf.RaggedTensor | None, seq_len: int, cls_id: int, sep_id: int,
         pad_id: int) -> dict[str, tf.Tensor]:
    """``[CLS] a [SEP] (b [SEP])`` cut to fit and padded to ``seq_len``, as ``Tokenizer.encode`` + ``pad_batch``.

    Args:
        pieces_a: WordPiece ids of the first texts, [B, None].
        pieces_b: of the second texts, or ``None`` for single texts.
        seq_len: T, every row's length, special tokens included.
        cls_id, sep_id, pad_id: the vocabulary's special token ids.

    Returns:
        ``token_ids``, ``segment_ids``, ``padding_mask``: int32 [B, T].
    """
    pair = pieces_b is not None
    length_a = tf.cast(pieces_a.row_lengths(), tf.int32)
    length_b = tf.cast(pieces_b.row_lengths(), tf.int32) if pair else None
    kept_a, kept_b = truncated_lengths(length_a, length_b, seq_len, pair)
    kept_a, kept_b = kept_a[:, None], (kept_b[:, None] if pair else 0)  # [B, 1]
    position = tf.range(seq_len, dtype=tf.int32)[None, :]  # [1, T]
    dense_a = tf.cast(pieces_a.to_tensor(pad_id, shape=[None, seq_len]), tf.int32)  # [B, T]
    from_a = tf.gather(dense_a, tf.maximum(tf.range(seq_len) - 1, 0), axis=1)  # [B, T]: a[j - 1]
    tokens = tf.where(position <= kept_a, from_a, sep_id)  # a, then [SEP] at kept_a + 1
    end = kept_a + 2  # one past the first [SEP]
    segments = tf.zeros_like(tokens)
    if pair:
        dense_b = tf.cast(pieces_b.to_tensor(pad_id, shape=[None, seq_len]), tf.int32)
        from_b = tf.gather(dense_b, tf.clip_by_value(position - end, 0, seq_len - 1), batch_dims=1, axis=1)
        second = position >= end
        tokens = tf.where(second & (position < end + kept_b), from_b, tokens)
        segments = tf.cast(second, tf.int32)
        end = end + kept_b + 1
    tokens = tf.where(position == 0, cls_id, tokens)
    mask = position < end
    return {"token_ids": tf.where(mask, tokens, pad_id), "segment_ids": tf.where(mask, segments, 0),
            "padding_mask": tf.cast(mask, tf.int32)}


class TextToIds(tf.Module):
    """Raw strings -> the encoder's three int32 [B, seq_len] inputs, all in TensorFlow ops.

    Args:
        vocabulary_tokens: the model's ``vocab.txt`` lines (must hold [CLS], [SEP], [PAD], [UNK]).
        lowercase: the vocabulary is uncased (``normalize_line``'s ``lower_case``).
        seq_len: T, special tokens included (at least 2, or 5 for pairs as ``data.truncate`` needs).
        pair: the model reads sentence pairs.
    """

    def __init__(self, vocabulary_tokens: Sequence[str], lowercase: bool, seq_len: int, pair: bool):
        super().__init__(name="text_to_ids")
        tokens = list(vocabulary_tokens)
        special = features.special_token_ids(tokens)
        missing = [token for token in ("[CLS]", "[SEP]", "[PAD]", "[UNK]") if token not in special]
        if missing:
            raise TrimbertError(f"the vocabulary lacks {', '.join(missing)}")
        if seq_len < (5 if pair else 2):
            raise TrimbertError(f"seq_len {seq_len} leaves no room for {'a sentence pair' if pair else 'a text'}")
        self.lowercase, self.seq_len, self.pair = bool(lowercase), int(seq_len), bool(pair)
        self.cls_id, self.sep_id, self.pad_id = special["[CLS]"], special["[SEP]"], special["[PAD]"]
        self.tokenizer = wordpiece.build_tokenizer(tokens)
        self._patterns = _patterns()
        fixes = _lowercase_fixes() if self.lowercase else ()
        self._lower_from = tf.constant([source for source, _ in fixes] or [-1], tf.int32)
        self._lower_to = tf.constant([target for _, target in fixes] or [-1], tf.int32)

    def _lower(self, text: tf.Tensor) -> tf.Tensor:
        """ICU's lower-casing, then the letters it misses as Python lower-cases them."""
        text = tf.strings.lower(text, encoding="utf-8")
        codes = tf.strings.unicode_decode(text, "UTF-8")  # [B, None] code points
        flat = codes.flat_values
        hits = tf.equal(flat[:, None], self._lower_from[None, :])  # [N, F]
        fixed = tf.where(tf.reduce_any(hits, axis=1), tf.gather(self._lower_to, tf.argmax(hits, axis=1)), flat)
        return tf.strings.unicode_encode(codes.with_flat_values(fixed), "UTF-8")

    def _non_ascii(self, text: tf.Tensor) -> tf.Tensor:
        patterns = self._patterns
        text = tf.strings.regex_replace(text, patterns["drop"], "")
        text = tf.strings.regex_replace(text, patterns["space"], " ")
        if self.lowercase:
            text = tensorflow_text.normalize_utf8(self._lower(text), "NFD")
            text = tf.strings.regex_replace(text, patterns["marks"], "")
        else:
            text = tensorflow_text.normalize_utf8(text, "NFC")
        return tf.strings.regex_replace(text, patterns["cjk"], r" \1 ")

    def normalize(self, text: tf.Tensor) -> tf.Tensor:
        """``normalize_line`` of every string of ``text`` (tf.string [B]) -> tf.string [B]."""
        patterns = self._patterns
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        normal = tf.strings.regex_replace(text, patterns["ascii_drop"], "")
        normal = tf.strings.regex_replace(normal, patterns["ascii_space"], " ")
        normal = tf.strings.lower(normal) if self.lowercase else normal  # ASCII letters only
        rows = tf.where(tf.logical_not(tf.strings.regex_full_match(text, _ASCII_LINE)))  # [K, 1]
        normal = tf.tensor_scatter_nd_update(normal, rows, self._non_ascii(tf.gather_nd(text, rows)))
        return tf.strings.regex_replace(normal, patterns["strip"], "")

    def pieces(self, text: tf.Tensor) -> tf.RaggedTensor:
        """WordPiece ids (int64 [B, None]) of raw strings, no special tokens (``Tokenizer.pieces``)."""
        return self.tokenizer.tokenize(self.normalize(text))

    def __call__(self, text: tf.Tensor, text_pair: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Raw strings [B] (and their second texts for a pair model) -> the encoder inputs, int32 [B, seq_len]."""
        if (text_pair is not None) != self.pair:
            raise TrimbertError("a pair model needs text_pair" if self.pair
                                else "a single-text model takes no text_pair")
        second = None
        if self.pair:
            check = tf.debugging.assert_equal(tf.shape(text)[0], tf.shape(text_pair)[0], message=(
                "text and text_pair must hold as many strings each (one pair per example)"))
            with tf.control_dependencies([check]):
                second = self.pieces(tf.identity(text_pair))
        return pack(self.pieces(text), second, self.seq_len, self.cls_id, self.sep_id, self.pad_id)
