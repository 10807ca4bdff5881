"""Measuring a command and every process it starts: wall time, CPU seconds and peak memory of the tree."""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import threading
import time


@dataclasses.dataclass
class TreeRun:
    """What one command cost.

    Args:
        stdout, stderr: its output.
        returncode: its exit code.
        wall_seconds: from start to exit.
        cpu_seconds: user + system CPU of the command and every descendant it waited for (rusage).
        sampled_cpu_by_pid: user + system CPU of each process last seen by the sampler (includes
            processes that were never waited for, e.g. a runner's workers).
        peak_tree_rss: the largest summed resident memory of the tree, in bytes (sampled every 0.2 s).
        peak_process_rss: the largest single process's resident memory, in bytes.
    """

    stdout: str
    stderr: str
    returncode: int
    wall_seconds: float
    cpu_seconds: float
    sampled_cpu_by_pid: dict[int, float]
    peak_tree_rss: int
    peak_process_rss: int


def run_and_sample(command: list[str], cwd=None, env=None) -> TreeRun:
    """Runs ``command`` to its end, sampling its process tree every 0.2 s."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, done = psutil.Process(process.pid), threading.Event()
    peaks = {"tree": 0, "process": 0}
    cpu_by_pid: dict[int, float] = {}

    def sample():
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for member in tree:
                try:
                    rss = member.memory_info().rss
                    times = member.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += rss
                peaks["process"] = max(peaks["process"], rss)
                cpu_by_pid[member.pid] = times.user + times.system
            peaks["tree"] = max(peaks["tree"], total)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return TreeRun(stdout, stderr, process.returncode, wall, cpu, cpu_by_pid, peaks["tree"], peaks["process"])
