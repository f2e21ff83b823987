"""gluonbert: the reference BERT for Apache MXNet Gluon."""
__version__ = '0.1.0'

from .model import (BERTClassifier, BERTConfig, BERTEncoder, BERTModel, MLMDecoder,  # noqa: E402
                    NSClassifier, get_config)
from .model.zoo import get_model  # noqa: E402
