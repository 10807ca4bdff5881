"""Runs a SavedModel that ``trimbert export --format saved_model`` wrote, with nothing but TensorFlow.

    python examples/serve_saved_model.py SERVING_FOLDER/1 "a gripping film" "dull and far too long"

A pair model takes its second texts after ``--pair``, one per text. Only ``tensorflow`` and
``tensorflow_text`` are imported: the second registers the tokenizer ops the graph uses, which is all
a serving process (or TF Serving built with tensorflow-text's ops) needs.
"""

import argparse

import tensorflow as tf
import tensorflow_text  # noqa: F401  registers FastWordpieceTokenizer's ops before loading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version_folder", help="the SavedModel: SERVING_FOLDER/<version>")
    parser.add_argument("texts", nargs="+", help="texts to classify or score")
    parser.add_argument("--pair", nargs="+", default=None, help="the second text of each pair")
    args = parser.parse_args()
    serve = tf.saved_model.load(args.version_folder).signatures["serving_default"]
    inputs = {"text": tf.constant(args.texts)}
    if args.pair is not None:
        inputs["text_pair"] = tf.constant(args.pair)
    outputs = {name: value.numpy() for name, value in serve(**inputs).items()}
    for row, text in enumerate(args.texts):
        if "score" in outputs:
            print(f"{outputs['score'][row]:8.4f}  {text}")
        else:
            probabilities = " ".join(f"{value:.3f}" for value in outputs["probabilities"][row])
            print(f"{outputs['label'][row].decode():>12}  [{probabilities}]  {text}")


if __name__ == "__main__":
    main()
