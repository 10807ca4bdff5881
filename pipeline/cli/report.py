"""``trimbert report RESULTS... --out DIR``: the command line of :mod:`pipeline.report.tables`."""

from __future__ import annotations

import argparse

import storage
from pipeline.report.tables import read_records, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="result.json files, folders holding them, or a results .sqlite store")
    parser.add_argument("--out", required=True, help="folder for the report files (local or gs://, s3://)")
    parser.add_argument("--title", default="Trade-off report", help="heading of the Markdown report")


def run(args: argparse.Namespace) -> int:
    records = read_records(args.results)
    paths = write_report(records, args.out, args.title)
    print(storage.read_text(paths["markdown"]))
    for kind, path in paths.items():
        print(f"{kind:18s} {path}")
    return 0
