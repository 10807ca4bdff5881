"""Preprocessing on Beam's DaskRunner vs the FnApiRunner (BENCHMARKS.md): same corpus, same flags.

For each format, runs ``trimbert preprocess`` twice: on the FnApiRunner (multi_processing, one SDK
worker per core, the local default), then with ``--runner DaskRunner`` against a local
dask.distributed cluster this script starts (a scheduler and ``--dask-workers`` single-threaded
workers, each its own process). Prints wall seconds, CPU seconds and tokens per CPU-second, and
whether the two outputs are byte-identical.

CPU seconds are user + system time of every process involved: the job's process tree (sampled every
0.2 s by ``preprocess_throughput.run_job``) and, for Dask, the scheduler and workers (their CPU time
after the job minus before it). A fresh cluster is started before each Dask run's clock; its workers
import TensorFlow inside the job, as the FnApiRunner's SDK workers do.

    .venv/bin/python benchmarks/preprocess_dask.py --vocab ~/.cache/trimbert/vocab/bert-base-uncased.txt \
        --corpus ~/.cache/trimbert/corpus/'*.txt' --formats packed,bert --work-dir /tmp/preprocess_dask
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from preprocess_throughput import run_job  # noqa: E402 (the sibling script, found through sys.path)

DASK = str(pathlib.Path(sys.executable).with_name("dask"))


class LocalCluster:
    """A dask scheduler and workers as separate processes that can import the project."""

    def __init__(self, workers: int, log_dir: pathlib.Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        environment = dict(os.environ, PYTHONPATH=str(ROOT))
        log_dir.mkdir(parents=True, exist_ok=True)
        commands = [[DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]]
        commands += [[DASK, "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
                     for _ in range(workers)]
        self.processes = []
        try:
            for number, command in enumerate(commands):
                log = open(log_dir / f"dask-{number}.log", "wb")  # noqa: SIM115 (lives as long as the process)
                self.processes.append(subprocess.Popen(command, env=environment, stdout=log,
                                                       stderr=subprocess.STDOUT))
            from distributed import Client

            with Client(self.address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
        except BaseException:
            self.stop()
            raise

    def cpu_seconds(self) -> float:
        """User + system seconds so far of the scheduler, the workers and their children."""
        import psutil

        total = 0.0
        for process in self.processes:
            root = psutil.Process(process.pid)
            for member in [root, *root.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def digests(folder: pathlib.Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def _row(job: dict, record_format: str, runner: str) -> dict:
    # Peak memory is left out: for Dask it would cover the driver only, not the workers.
    row = {key: job[key] for key in ("seconds", "cpu_seconds", "tokens", "examples")}
    row.update(format=record_format, runner=runner, tokens_per_cpu_second=job["tokens"] / job["cpu_seconds"])
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="glob of plain-text files")
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--formats", default="packed,bert", help="comma-separated: packed,bert")
    parser.add_argument("--dupe-factor", type=int, default=10)
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--work-dir", default="/tmp/preprocess_dask")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    for record_format in args.formats.split(","):
        common = ["--input", args.corpus, "--vocab", args.vocab, "--format", record_format,
                  "--dupe-factor", str(args.dupe_factor), "--shards", "8"]
        outputs = {runner: work / f"out-{record_format}-{runner}" for runner in ("FnApiRunner", "DaskRunner")}
        job = run_job([*common, "--output", str(outputs["FnApiRunner"])])
        rows.append(_row(job, record_format, "FnApiRunner"))
        # A fresh cluster for each run, so its workers import TensorFlow inside the job, as the
        # FnApiRunner's SDK workers do.
        cluster = LocalCluster(args.dask_workers, work / f"logs-{record_format}")
        try:
            cluster_before = cluster.cpu_seconds()
            job = run_job([*common, "--output", str(outputs["DaskRunner"]), "--runner", "DaskRunner",
                           "--dask_client_address", cluster.address])
            job["cpu_seconds"] += cluster.cpu_seconds() - cluster_before
        finally:
            cluster.stop()
        rows.append(_row(job, record_format, "DaskRunner"))
        identical = digests(outputs["FnApiRunner"]) == digests(outputs["DaskRunner"])
        rows[-1]["byte_identical_to_fn_api_runner"] = identical
        print(f"{record_format}: Dask output byte-identical to FnApiRunner's: {identical}", flush=True)
        for folder in outputs.values():
            shutil.rmtree(folder)
    report = {"cores": os.cpu_count(), "corpus": args.corpus, "dask_workers": args.dask_workers, "jobs": rows}
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {work / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
