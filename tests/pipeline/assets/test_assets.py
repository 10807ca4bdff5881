"""Data assets: parsing and splitting on small fixtures, and fetch idempotency from the cache."""

import io
import tarfile

import pytest

from pipeline.assets import cache as assets
from pipeline.assets import corpora


def _tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_parse_rated_sentences_skips_blank_lines_and_strips_crlf():
    text = "1\t2.5\tGreat  film!\r\n\r\n2\t-1.0\tDull.\r\n3\t0\tNeutral.\r\n"
    rows = corpora.parse_rated_sentences(text, source="movies.txt")
    assert rows == [("1", 2.5, "Great film!"), ("2", -1.0, "Dull."), ("3", 0.0, "Neutral.")]


def test_parse_rated_sentences_names_file_and_line():
    with pytest.raises(assets.AssetError, match=r"movies.txt line 2: expected id<TAB>rating<TAB>text"):
        corpora.parse_rated_sentences("1\t2\tok\nbroken line\n", source="movies.txt")
    with pytest.raises(assets.AssetError, match=r"movies.txt line 1: rating 'high' is not a number"):
        corpora.parse_rated_sentences("1\thigh\tok\n", source="movies.txt")


def test_split_drops_zeros_labels_by_sign_and_is_deterministic():
    rows = [(str(i), (i % 5) - 2.0, f"sentence {i}") for i in range(200)]  # 40 zero ratings
    splits = corpora.split_examples("sentiment-test", rows)
    sizes = {name: len(examples) for name, examples in splits.items()}
    assert sizes == {"train": 128, "dev": 16, "test": 16}
    everything = [example for examples in splits.values() for example in examples]
    assert len(set(everything)) == 160  # no overlap, nothing lost
    by_sentence = {f"sentence {i}": (i % 5) - 2.0 for i in range(200)}
    for sentence, label in everything:
        assert by_sentence[sentence] != 0
        assert label == (1 if by_sentence[sentence] > 0 else 0)
    assert corpora.split_examples("sentiment-test", list(reversed(rows))) == splits
    assert corpora.split_examples("sentiment-other", rows) != splits  # the task name seeds the order


def test_tsv_round_trip_and_bad_tsv(tmp_path):
    examples = [("a good day", 1), ("a bad day", 0)]
    path = tmp_path / "train.tsv"
    corpora.write_tsv(path, examples)
    assert corpora.read_tsv(path) == examples
    path.write_text("sentence\tlabel\nfine\t1\nbroken\t7\n")
    with pytest.raises(assets.AssetError, match=r"train.tsv line 3"):
        corpora.read_tsv(path)


def test_untag_brown_line():
    line = "\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./."
    assert corpora.untag_brown_line(line) == 'The jury said " no evidence " .'
    assert corpora.untag_brown_line("1/2/cd") == "1/2"


def test_read_vader_sentences_from_a_fixture_sdist(tmp_path):
    inner = _tar_gz_bytes({
        f"hutto_ICWSM_2014/{filename}": f"1_1\t1.5\t{task} good\r\n1_2\t-2\t{task} bad\r\n".encode()
        for task, filename in corpora.SENTIMENT_TASKS.items()
    })
    sdist = tmp_path / "vader.tar.gz"
    member = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    sdist.write_bytes(_tar_gz_bytes({member: inner}))
    tasks = corpora.read_vader_sentences(sdist)
    assert set(tasks) == set(corpora.SENTIMENT_TASKS)
    assert tasks["sentiment-nyt"] == [("1_1", 1.5, "sentiment-nyt good"), ("1_2", -2.0, "sentiment-nyt bad")]


def test_brown_and_sotu_documents_from_fixture_archives(tmp_path):
    brown = tmp_path / "brown.tgz"
    brown.write_bytes(_tar_gz_bytes({
        "package/ca01": b"\n\n\tThe/at cat/nn ./.\n\n\tIt/pps sat/vbd ./.\n",
        "package/ca02": b"\tA/at dog/nn ./.\n",
        "package/package.json": b"{}",
    }))
    with tarfile.open(brown) as archive:
        assert list(corpora.brown_documents(archive)) == [["The cat .", "It sat ."], ["A dog ."]]
    sotu = tmp_path / "sotu.tgz"
    sotu.write_bytes(_tar_gz_bytes({"package/data/1790_a.txt": b"First. Second.\n",
                                    "package/data/1790_a.json": b"{}"}))
    with tarfile.open(sotu) as archive:
        assert list(corpora.sotu_documents(archive)) == [["First. Second."]]


def test_write_documents_separates_with_one_blank_line(tmp_path):
    path = tmp_path / "corpus.txt"
    count = corpora.write_documents(path, iter([["a.", "b."], [], ["c."]]))
    assert count == 2
    assert path.read_text() == "a.\nb.\n\nc.\n"


class CountingDownloader:
    def __init__(self):
        self.calls = []

    def __call__(self, archive, destination):
        self.calls.append(archive.spec)
        return assets.download_archive(archive, destination)


def test_fetch_is_idempotent_and_rebuilds_damaged_assets(tmp_path):
    downloader = CountingDownloader()
    first = assets.fetch(["sentiment", "vocab"], root=tmp_path, downloader=downloader, log=lambda m: None)
    assert sorted(downloader.calls) == [assets.MINILM_WHEEL.spec, assets.VADER_SDIST.spec]
    assert first["vocab"].records == 30522
    assert first["sentiment"].records == 23320  # 23,703 rated sentences less 383 rated exactly 0
    train = tmp_path / "sentiment" / "sentiment-movies" / "train.tsv"
    original = train.read_bytes()
    modified = train.stat().st_mtime_ns

    downloader.calls.clear()
    again = assets.fetch(["sentiment", "vocab"], root=tmp_path, downloader=downloader, log=lambda m: None)
    assert downloader.calls == []
    assert again == first
    assert train.stat().st_mtime_ns == modified

    train.write_text("sentence\tlabel\ntampered\t1\n")
    assert assets.verify(tmp_path, first["sentiment"]) == ["sentiment/sentiment-movies/train.tsv"]
    assets.fetch(["sentiment", "vocab"], root=tmp_path, downloader=downloader, log=lambda m: None)
    assert downloader.calls == [assets.VADER_SDIST.spec]  # only the damaged asset is rebuilt
    assert train.read_bytes() == original
    assert not list(tmp_path.glob(".building-*"))


def test_checksum_mismatch_fails_and_leaves_nothing(tmp_path):
    def forged(archive, destination):
        path = destination / archive.filename
        path.write_bytes(b"not the real archive")
        return path

    with pytest.raises(assets.AssetError, match="sha256 .* does not match the pinned"):
        assets.fetch(["vocab"], root=tmp_path, downloader=forged, log=lambda m: None)
    assert not (tmp_path / "vocab").exists()
    assert assets.read_records(tmp_path) == {}


def test_unreachable_package_gives_a_clear_error(tmp_path):
    missing = assets.Archive("pypi", "trimbert-no-such-package==9.9.9", "nothing.whl", "0" * 64)
    expected = r"could not download trimbert-no-such-package==9.9.9 from PyPI"
    with pytest.raises(assets.AssetError, match=expected):
        assets.download_archive(missing, tmp_path)


def test_unknown_asset_name_is_rejected(tmp_path):
    with pytest.raises(assets.AssetError, match="unknown asset 'weights'"):
        assets.fetch(["weights"], root=tmp_path)


def test_cli_data_list_reports_assets(tmp_path, capsys, vocab_path):
    from pipeline.cli.main import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "vocab" in out and "30,522 tokens" in out and str(vocab_path) in out
    assert main(["data", "list", "--cache", str(tmp_path)]) == 1
