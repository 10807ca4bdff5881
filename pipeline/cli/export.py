"""``trimbert export``: a fine-tuned model as a TensorFlow SavedModel, or a model as a keras-hub preset.

``--format saved_model`` takes a kept model (``finetune``'s ``OUT/model``) and writes TF Serving's layout,
``OUT/<version>/``, whose ``serving_default`` signature takes raw text (``pipeline.serving.saved_model``).
``--format keras-hub`` takes a kept model (-> ``BertTextClassifier`` preset) or a pre-trained encoder
(a pre-training model directory, a checkpoint, a Hugging Face or keras-hub folder -> ``BertBackbone``
preset), and refuses shapes keras-hub's BERT cannot express, naming each. Every export gets the model
card beside it, ``OUT/README.md``.
"""

from __future__ import annotations

import argparse

FORMATS = ("saved_model", "keras-hub")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a fine-tuned model folder (finetune's OUT/model); for keras-hub also a pre-trained "
                             "encoder: model directory, checkpoint, Hugging Face or keras-hub folder")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="saved_model: TF Serving layout OUT/VERSION/ with a raw-text signature; "
                             "keras-hub: a preset BertTextClassifier or BertBackbone loads")
    parser.add_argument("--out", required=True, help="output folder (local)")
    parser.add_argument("--version", type=int, default=1,
                        help="saved_model: the version folder to write under OUT (never overwritten)")


def run(args: argparse.Namespace) -> int:
    import storage
    from pipeline.finetune import kept_model

    is_kept = storage.isfile(storage.join(args.model, kept_model.MANIFEST_FILE))
    if args.format == "saved_model":
        path = _saved_model(kept_model.load(args.model), args.out, args.version)
    elif is_kept:
        path = _keras_hub_classifier(kept_model.load(args.model), args.out)
    else:
        path = _keras_hub_backbone(args.model, args.out)
    print(f"wrote {path}")
    return 0


def _saved_model(model, out: str, version: int) -> str:
    import storage
    from pipeline.finetune import model_card
    from pipeline.serving.saved_model import export_saved_model

    path = export_saved_model(model.classifier, model.tokenizer.tokens, model.tokenizer.lowercase,
                              model.seq_len, model.label_names, len(model.text_columns) == 2, out, version)
    storage.copy_file(storage.join(model.folder, model_card.FILENAME), storage.join(out, model_card.FILENAME))
    return str(path)


def _keras_hub_classifier(model, out: str) -> str:
    import storage
    from pipeline.finetune import model_card
    from pipeline.serving.keras_hub_preset import export_keras_hub_classifier

    path = export_keras_hub_classifier(model.classifier, model.tokenizer.tokens,
                                       model.tokenizer.lowercase, model.classifier.output_shape[-1], out,
                                       sequence_length=model.seq_len)
    storage.copy_file(storage.join(model.folder, model_card.FILENAME), storage.join(out, model_card.FILENAME))
    return str(path)


def _keras_hub_backbone(source_path: str, out: str) -> str:
    import storage
    from pipeline.evaluation.record import read_pretrain_accelerator_hours
    from pipeline.finetune import model_card
    from pipeline.model_source import ModelSource
    from pipeline.serving.keras_hub_preset import export_keras_hub_backbone

    source = ModelSource.open(source_path, "--model")
    vocabulary, lowercase = source.vocabulary()
    encoder = source.encoder()
    path = export_keras_hub_backbone(encoder, storage.read_text(vocabulary).splitlines(), lowercase, out)
    config = encoder.to_config()
    card = model_card.render(config, config.model.max_sequence_length, base_model=str(source.path),
                             pretrain_accelerator_hours=read_pretrain_accelerator_hours(source.path))
    storage.write_text(storage.join(out, model_card.FILENAME), card)
    return str(path)
