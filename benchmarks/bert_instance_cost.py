"""CPU per ``bert`` instance of the building step alone, in one process (BENCHMARKS.md).

Reads and tokenizes a sample of the corpus once, then times ``BertBatcher`` (chunking, pairing,
masking, encoding, framing) over it with seq 128, 20 predictions, dupe factor 5, and a pool of the sample's
first 200 documents. ``--profile`` adds a cProfile listing of the most expensive functions. Run it
with PYTHONPATH pointing at the checkout to measure (e.g. an older commit's ``git archive``).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bert_instance_cost.py \\
        --vocab ~/.cache/trimbert/vocab/bert-base-uncased.txt --input '/tmp/preprocess_split/sixteen/part-0[0-2].txt'
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from beam_jobs.instances import BertBatcher, SpecialIds, sort_pool
    from beam_jobs.normalize import normalize_document, split_document
    from beam_jobs.read import DocumentReader, expand_inputs
    from beam_jobs.records import Stats
    from beam_jobs.tokenize import BatchTokenizer, read_vocabulary
    from configs.schema import DataConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--input", required=True, help="glob of the sample")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    tokens = read_vocabulary(args.vocab)
    tokenizer, stats, documents = BatchTokenizer(tokens), Stats(), []
    for unit in expand_inputs(args.input):
        for document in DocumentReader("text", log_empty_files=False).documents(unit, stats):
            documents += tokenizer.add(split_document(normalize_document(document, True)), stats)
    documents += tokenizer.flush(stats)
    config = DataConfig(format="bert", seq_len=128, max_predictions=20, dupe_factor=5, seed=12345)
    special = SpecialIds.from_tokens(tokens)
    pool = sort_pool(documents[:200], config.seed)

    def build() -> int:
        batcher = BertBatcher(config, special, 8, pool)
        batches = [batch for document in documents for batch in batcher.add(document)]
        return sum(len(batch.lengths) for batch in [*batches, *batcher.flush()])

    started = time.process_time()
    instances = build()
    seconds = time.process_time() - started
    print(f"{len(documents)} documents, {stats['tokens']} tokens: {instances} instances in {seconds:.2f} CPU-s, "
          f"{seconds / instances * 1e6:.0f} µs per instance")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(build)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
