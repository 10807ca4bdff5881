"""``trimbert report RESULTS... --out DIR``: the command line of :mod:`pipeline.report.tables`."""

from __future__ import annotations

import argparse
import pathlib

from pipeline.report.tables import read_records, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", type=pathlib.Path, metavar="RESULTS",
                        help="result.json files, folders holding them, or a results .sqlite store")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="folder for the report files")
    parser.add_argument("--title", default="Trade-off report", help="heading of the Markdown report")


def run(args: argparse.Namespace) -> int:
    records = read_records(args.results)
    paths = write_report(records, args.out, args.title)
    print(paths["markdown"].read_text(encoding="utf-8"))
    for kind, path in paths.items():
        print(f"{kind:18s} {path}")
    return 0
