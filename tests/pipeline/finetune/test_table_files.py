"""A user's tables: CSV (RFC 4180 quoting), TSV (quotes are text), JSON Lines and Parquet, read as row batches
that name their file and line."""

from __future__ import annotations

import json
import re

import pytest

from configs.errors import TrimbertError
from pipeline.finetune import table_files


def _all_rows(path, columns, batch_rows=table_files.BATCH_ROWS):
    return [row for batch in table_files.iter_rows(str(path), columns, batch_rows) for row in batch]


def test_csv_quoted_fields_hold_commas_quotes_and_line_breaks(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes('\ufefftext,label\n"one, two",a\n"say ""hi""\nthen go",b\n\nplain,c\n'.encode())
    assert table_files.read_columns(str(path)) == ["text", "label"]  # the byte-order mark is not a name
    rows = _all_rows(path, ["label", "text"])
    assert [row.values for row in rows] == [("a", "one, two"), ("b", 'say "hi"\nthen go'), ("", ""),
                                            ("c", "plain")]
    # The quoted field spans lines 3-4; the blank line 5 is a row of empty values (output rows stay aligned
    # with input lines); the last row is on line 6.
    assert [row.where for row in rows] == [f"{path} line {line}" for line in (2, 3, 5, 6)]


def test_tsv_takes_quotes_as_text(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text('sentence\tlabel\n"quoted\tx\nit\'s "fine"\ty\n\n\nlast\tz\n\n\n', encoding="utf-8")
    rows = _all_rows(path, ["sentence", "label"])
    assert [row.values for row in rows] == [('"quoted', "x"), ('it\'s "fine"', "y"), ("", ""), ("", ""),
                                            ("last", "z")]
    assert [row.where for row in rows] == [f"{path} line {line}" for line in (2, 3, 4, 5, 6)]  # not the last two


def test_json_lines_keeps_json_values_and_names_lines(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [{"text": "a", "label": 1, "extra": [1]}, None, {"text": "b", "label": "x"}, {"label": 2.5, "text": "c"}]
    path.write_text("".join("\n" if line is None else json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert table_files.read_columns(str(path)) == ["text", "label", "extra"]
    rows = _all_rows(path, ["text", "label"])
    assert [row.values for row in rows] == [("a", 1), ("b", "x"), ("c", 2.5)]
    assert [row.where for row in rows] == [f"{path} line 1", f"{path} line 3", f"{path} line 4"]


def test_a_json_line_missing_a_key_names_its_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(TrimbertError, match=rf"^{re.escape(str(path))} line 2: no key 'label'$"):
        _all_rows(path, ["text", "label"])


def test_parquet_reads_across_row_groups_in_batches(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    table = pa.table({"text": [f"t{i}" for i in range(10)], "label": list(range(10))})
    pq.write_table(table, path, row_group_size=3)
    assert pq.ParquetFile(path).num_row_groups == 4
    batches = list(table_files.iter_rows(str(path), ["text", "label"], batch_rows=4))
    assert [len(batch) for batch in batches] == [4, 4, 2]
    rows = [row for batch in batches for row in batch]
    assert [row.values for row in rows] == [(f"t{i}", i) for i in range(10)]
    assert [row.where for row in rows] == [f"{path} row {i}" for i in range(1, 11)]


def test_batches_of_a_text_file_keep_file_order(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text\n" + "".join(f"row {i}\n" for i in range(7)), encoding="utf-8")
    batches = list(table_files.iter_rows(str(path), ["text"], batch_rows=3))
    assert [[row.values[0] for row in batch] for batch in batches] == [
        ["row 0", "row 1", "row 2"], ["row 3", "row 4", "row 5"], ["row 6"]]
    assert batches[-1][0].where == f"{path} line 8"


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_a_missing_column_names_the_file_and_its_columns(tmp_path, suffix):
    path = tmp_path / f"train.{suffix}"
    if suffix == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"sentence": ["a"], "gold": ["x"]}), path)
    else:
        separator = "\t" if suffix == "tsv" else ","
        path.write_text('{"sentence": "a", "gold": "x"}\n' if suffix == "jsonl"
                        else f"sentence{separator}gold\na{separator}x\n", encoding="utf-8")
    with pytest.raises(TrimbertError,
                       match=rf"^{re.escape(str(path))} has no column 'label'; its columns: sentence, gold$"):
        _all_rows(path, ["sentence", "label"])


def test_short_rows_bad_files_and_unknown_suffixes_are_named(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("a,b\n1,2\n3\n", encoding="utf-8")
    with pytest.raises(TrimbertError,
                       match=rf"^{re.escape(str(short))} line 3: 1 field\(s\) where the header has 2"):
        _all_rows(short, ["a", "b"])
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(TrimbertError, match=rf"^{re.escape(str(empty))} is empty$"):
        table_files.read_columns(str(empty))
    with pytest.raises(TrimbertError, match="not found"):
        table_files.read_columns(str(tmp_path / "absent.tsv"))
    with pytest.raises(TrimbertError, match=r"unknown table format; name the file \.csv"):
        table_files.read_columns(str(tmp_path / "train.xlsx"))
    not_parquet = tmp_path / "train.parquet"
    not_parquet.write_bytes(b"not parquet at all")
    with pytest.raises(TrimbertError, match=rf"^{re.escape(str(not_parquet))} is not a readable Parquet file"):
        table_files.read_columns(str(not_parquet))
    not_json = tmp_path / "train.jsonl"
    not_json.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(TrimbertError, match=rf"^{re.escape(str(not_json))} line 2: expected a JSON object, got list$"):
        _all_rows(not_json, ["a"])


def test_shifted_columns_repeated_names_bad_bytes_and_half_characters_are_named(tmp_path):
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("text,label\nfine,pos\nhello, world,pos\n", encoding="utf-8")
    with pytest.raises(TrimbertError, match=r"shifted.csv line 3: 3 field\(s\) where the header has 2"):
        _all_rows(shifted, ["text", "label"])
    trailing = tmp_path / "trailing.tsv"  # empty fields past the header's are harmless
    trailing.write_text("text\tlabel\nfine\tpos\t\t\n", encoding="utf-8")
    assert [row.values for row in _all_rows(trailing, ["text", "label"])] == [("fine", "pos")]
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("text,text,label\na,b,c\n", encoding="utf-8")
    with pytest.raises(TrimbertError, match="names column 'text' more than once"):
        _all_rows(repeated, ["text", "label"])
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("text,label\ncaf\u00e9,pos\n".encode("latin-1"))  # the bad byte is in the first block read
    with pytest.raises(TrimbertError, match="latin1.csv: not UTF-8 text"):
        table_files.read_columns(str(latin))
    half = tmp_path / "half.jsonl"
    half.write_text('{"text": "ok", "label": 1}\n{"text": "cut \\ud83d", "label": 1}\n', encoding="utf-8")
    with pytest.raises(TrimbertError, match=r"half.jsonl line 2: key 'text' holds a lone UTF-16 surrogate"):
        _all_rows(half, ["text", "label"])
