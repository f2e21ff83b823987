"""gluonbert: the reference BERT for Apache MXNet Gluon."""
__version__ = '0.1.0'

from .allocator import tune_allocator

# Before MXNet is imported, so that its threads allocate from the tuned arena
# (see gluonbert/allocator.py; GLUONBERT_TUNE_MALLOC=0 turns it off).
tune_allocator()

from .model import (BERTClassifier, BERTConfig, BERTEncoder, BERTModel, MLMDecoder,  # noqa: E402
                    NSClassifier, get_config)
from .model.zoo import get_model  # noqa: E402
