"""The one weight initialiser BERT uses everywhere (truncated normal, stddev 0.02)."""

import keras


def bert_initializer() -> keras.initializers.Initializer:
    """A fresh truncated-normal(0.02) initialiser (Devlin et al. 2019, appendix A.2)."""
    return keras.initializers.TruncatedNormal(stddev=0.02)
