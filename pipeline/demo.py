"""``make demo``: the main job on the embedded data, every existing stage end to end.

Each step is a real ``trimbert`` command run as a subprocess, printed before it
runs, so what the demo does is exactly what a user can type.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import subprocess
import sys
import time


def demo_steps(out: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(title, trimbert arguments) for each stage, in pipeline order."""
    return [
        ("fetch the embedded data assets", ["data", "fetch"]),
        ("list them", ["data", "list"]),
        ("show the tiny encoder's config", ["config", "show", "tiny"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_output"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps = demo_steps(args.out)
    for number, (title, arguments) in enumerate(steps, start=1):
        command = [sys.executable, "-m", "pipeline.cli", *arguments]
        print(f"\n=== [{number}/{len(steps)}] {title}\n$ trimbert {shlex.join(arguments)}", flush=True)
        step_started = time.monotonic()
        completed = subprocess.run(command)
        if completed.returncode != 0:
            print(f"demo: step {number} ({title}) failed with exit code {completed.returncode}",
                  file=sys.stderr)
            return completed.returncode
        print(f"--- done in {time.monotonic() - step_started:.1f} s", flush=True)
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s; outputs under {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
