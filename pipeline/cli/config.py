"""``trimbert config show FILE``: the resolved config and its exact parameter count."""

from __future__ import annotations

import argparse

from configs import schema as config_lib


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the resolved config and its parameter count")
    show.add_argument("file", help="a YAML config, or the name of a shipped one (e.g. bert_base)")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a field, e.g. --set model.num_layers=6 (repeatable)")
    actions.add_parser("list", help="list the shipped configs with their parameter counts")


def run(args: argparse.Namespace) -> int:
    from models import params

    if args.action == "list":
        for name in config_lib.shipped_names():
            config = config_lib.load(name)
            print(f"{name:20s} {params.count_parameters(config).total:>14,} parameters")
        return 0
    config = config_lib.load(args.file, args.overrides)
    print(config_lib.dump(config), end="")
    count = params.count_parameters(config)
    seq_len = config.data.seq_len
    print(f"# parameters: {count.total:,} (embeddings {count.embeddings:,}, "
          f"blocks {sum(count.blocks):,} in {len(count.blocks)}, pooler {count.pooler:,})")
    print(f"# masked-LM head adds {params.masked_lm_head_parameters(config):,} (output tied to embeddings)")
    print(f"# forward FLOPs per token at length {seq_len}: {params.flops_per_token(config, seq_len):,}")
    return 0
