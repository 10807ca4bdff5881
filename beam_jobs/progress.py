"""Where a running job is: workers write their counts to small files, the driver sums and prints them.

Worker logs do not reliably reach the terminal: the FnApiRunner's SDK worker processes and Dask's
workers log in other processes (and Beam metrics are not collected on Dask). So each read unit's
step rewrites one small JSON file, ``SCRATCH/progress/unit-NNNNNNN.json``, with its counts so far
(at most every half interval, and when the unit ends), and a thread in the driver sums every such
file each interval and logs one line. The files are on the same filesystem as the fragments, so
this works wherever the job does. They only report; nothing in the output depends on them.
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
import time

from apache_beam.io.filesystems import FileSystems

COUNTS = ("documents", "tokens", "instances", "bytes")


class UnitProgress:
    """One read unit's running counts, rewritten to its progress file now and then.

    Args:
        progress_dir: the job's progress folder.
        unit: the read unit's index (names the file, so a repeated step overwrites its own).
        interval: seconds between the driver's lines; the file is rewritten at most twice as often.
    """

    def __init__(self, progress_dir: str, unit: int, interval: float) -> None:
        self._path = posixpath.join(progress_dir, f"unit-{unit:07d}.json")
        self._interval = interval / 2
        self._last = time.monotonic()
        self.counts = dict.fromkeys(COUNTS, 0)

    def update(self, **increments: int) -> None:
        for name, value in increments.items():
            self.counts[name] += value
        if time.monotonic() - self._last >= self._interval:
            self.save()

    def save(self) -> None:
        self._last = time.monotonic()
        with FileSystems.create(self._path) as handle:
            handle.write(json.dumps(self.counts).encode("utf-8"))


def read_progress(progress_dir: str) -> dict[str, int]:
    """The summed counts of every unit's progress file (a file being rewritten is skipped)."""
    totals = dict.fromkeys(COUNTS, 0)
    pattern = posixpath.join(progress_dir, "unit-*.json")
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        try:
            with FileSystems.open(metadata.path) as handle:
                counts = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError):  # caught mid-rewrite or deleted at commit: next time
            continue
        for name in COUNTS:
            totals[name] += counts.get(name, 0)
    return totals


class ProgressReporter:
    """A driver thread that logs the summed progress every ``interval`` seconds until stopped.

    Args:
        progress_dir: the job's progress folder.
        interval: seconds between lines.
    """

    def __init__(self, progress_dir: str, interval: float) -> None:
        self._progress_dir, self._interval = progress_dir, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="preprocess-progress", daemon=True)
        self._started = time.monotonic()
        self.phase = "starting"

    def __enter__(self) -> ProgressReporter:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                counts = read_progress(self._progress_dir)
            except Exception as error:  # a progress line must never fail the job
                logging.warning("preprocess: progress not readable: %s", error)
                continue
            logging.info("preprocess: %s", self.describe(counts, time.monotonic() - self._started))

    def describe(self, counts: dict[str, int], elapsed: float) -> str:
        # Bytes read, not a percentage: a gzip input's decompressed size is not known in advance.
        return (f"progress at {elapsed:.0f} s ({self.phase}): {counts['documents']:,} documents "
                f"({counts['bytes'] / 1e6:,.1f} MB), {counts['tokens']:,} tokens, "
                f"{counts['instances']:,} instances; {counts['tokens'] / max(elapsed, 1e-9):,.0f} tokens/s")
