"""Serving a fine-tuned classifier: raw-text SavedModels for TF Serving, their latency, keras-hub presets.

    TextToIds(vocabulary_tokens, lowercase, seq_len, pair)     pipeline.serving.text_graph
    export_saved_model(classifier, vocabulary_tokens, lowercase, seq_len, label_names, pair, out_dir, version)
                                                               pipeline.serving.saved_model
    measure_latency(export, texts, text_pairs, batch_sizes, repeats, device)   pipeline.serving.latency
    export_keras_hub_backbone(encoder, vocabulary_tokens, lowercase, out_dir),
    export_keras_hub_classifier(classifier, vocabulary_tokens, lowercase, num_classes, out_dir, sequence_length)
                                                               pipeline.serving.keras_hub_preset

Each module imports TensorFlow; this package file imports nothing, so import the module you need.
"""
