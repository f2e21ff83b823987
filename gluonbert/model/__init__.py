"""BERT as Gluon HybridBlocks (see DESIGN: config -> encoder -> heads -> bert)."""
from .bert import BERTClassifier, BERTModel, ExportedBERT, import_exported
from .checkpoint import load_parameters, save_parameters
from .config import BERTConfig, get_config, list_configs, register_config
from .encoder import BERTEncoder
from .heads import BERTPooler, MLMDecoder, NSClassifier
from .transformer import PositionwiseFFN, TransformerCell

__all__ = ['BERTConfig', 'get_config', 'list_configs', 'register_config', 'BERTEncoder',
           'BERTPooler', 'NSClassifier', 'MLMDecoder', 'BERTModel', 'BERTClassifier',
           'ExportedBERT', 'import_exported',
           'PositionwiseFFN', 'TransformerCell', 'load_parameters', 'save_parameters']
