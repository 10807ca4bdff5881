"""Trim specs: parsing, the trim sections they make, and the errors that name the bad spec."""

from __future__ import annotations

import pytest

from configs.errors import TrimbertError
from configs.schema import TrimConfig
from pipeline.studies import trim_specs


def test_trimbert_is_the_three_knobs_together():
    spec = trim_specs.parse("trimbert")
    trim = trim_specs.trimmed(TrimConfig(), spec, 4)
    assert trim.ffn_blocks == (0, 1) and trim.attention_normalizer == "relu"
    assert trim.attention_layernorm_blocks == () and trim.ffn_layernorm_blocks is None
    assert trim == trim_specs.trimmed(TrimConfig(), trim_specs.parse("no-ffn:top-half+attention:relu+half-ln"), 4)


def test_no_ffn_blocks_keep_what_the_model_already_trims():
    already = TrimConfig(ffn_blocks=(0, 1, 2))  # block 3 has no FFN already
    trim = trim_specs.trimmed(already, trim_specs.parse("no-ffn:0"), 4)
    assert trim.ffn_blocks == (1, 2)
    assert trim_specs.trimmed(TrimConfig(), trim_specs.parse("no-ffn:top-half"), 5).ffn_blocks == (0, 1)
    with pytest.raises(TrimbertError, match="outside 0..3"):
        trim_specs.trimmed(TrimConfig(), trim_specs.parse("no-ffn:4"), 4)


def test_list_parsing_keeps_block_lists_together_and_reads_heal_and_drops():
    specs = trim_specs.parse_list("untrimmed, no-ffn:2,3+heal, pmb:top:2, student:bort, random-init")
    assert [spec.name for spec in specs] == ["untrimmed", "no-ffn:2,3+heal", "pmb:top:2", "student:bort",
                                             "random-init"]
    assert specs[1].no_ffn == (2, 3) and specs[1].heal and specs[2].drop == ("top", 2)
    assert trim_specs.dropped_blocks(specs[2], 6) == (4, 5)
    assert trim_specs.dropped_blocks(trim_specs.parse("pmb:bottom:1"), 6) == (0,)
    assert trim_specs.folder_name(specs[1]) == "no-ffn_2-3+heal"
    assert specs[0].is_reference and specs[4].random_init


@pytest.mark.parametrize("text, message", [
    ("attention:tanh", "attention normaliser"), ("pmb:middle:2", "pmb:STRATEGY:K"), ("pmb:top:0", "pmb:STRATEGY:K"),
    ("no-ffn:", "no-ffn takes"), ("half-ln+untrimmed", "cannot be combined"), ("student:bort+heal", "own shape"),
    ("shrink", "unknown part"),
])
def test_bad_specs_are_refused_naming_them(text, message):
    with pytest.raises(TrimbertError, match=message) as error:
        trim_specs.parse(text)
    assert repr(text) in str(error.value)


def test_repeated_rows_are_refused():
    with pytest.raises(TrimbertError, match="repeat half-ln"):
        trim_specs.parse_list("half-ln,trimbert,half-ln")
