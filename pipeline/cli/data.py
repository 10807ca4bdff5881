"""``trimbert data fetch|list``: the embedded data assets in the cache directory."""

from __future__ import annotations

import argparse
import pathlib

from pipeline.assets import cache as assets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download, verify and build the assets (idempotent)")
    fetch.add_argument("names", nargs="*", metavar="NAME",
                       help=f"assets to fetch (default all): {', '.join(assets.ASSET_NAMES)}")
    fetch.add_argument("--archives", type=pathlib.Path, default=None,
                       help="folder of already downloaded archives to use before any registry")
    fetch.add_argument("--no-npm", action="store_true",
                       help="build the corpus from the sentiment sentences even if npm exists")
    actions.add_parser("list", help="print each asset's path, size, record count, sha256 and source")
    for sub in actions.choices.values():
        sub.add_argument("--cache", type=pathlib.Path, default=None,
                         help="cache directory (default $TRIMBERT_DATA or ~/.cache/trimbert)")


def run(args: argparse.Namespace) -> int:
    root = args.cache or assets.cache_dir()
    if args.action == "fetch":
        use_npm = False if args.no_npm else None
        assets.fetch(args.names or None, root=root, archives_dir=args.archives, use_npm=use_npm)
        return 0
    records = assets.read_records(root)
    if not records:
        print(f"no assets in {root}; run `trimbert data fetch`")
        return 1
    for record in records.values():
        damaged = assets.verify(root, record)
        status = f"DAMAGED ({len(damaged)} files)" if damaged else "ok"
        print(f"{record.name}\n  path:    {root / record.path}\n  size:    {record.size:,} bytes in "
              f"{len(record.files)} files\n  records: {record.records:,} {record.record_kind}\n"
              f"  sha256:  {_asset_digest(record)}\n  source:  {record.source}\n  status:  {status}")
    return 0


def _asset_digest(record: assets.AssetRecord) -> str:
    """One sha256 for the asset: of its sorted (file, sha256) list, or the file's own for one file."""
    if len(record.files) == 1:
        return next(iter(record.files.values()))
    import hashlib

    listing = "".join(f"{path}\t{digest}\n" for path, digest in sorted(record.files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()
