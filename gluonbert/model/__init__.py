"""BERT as Gluon HybridBlocks (see DESIGN: config -> encoder -> heads -> bert), and where
pretrained weights come from: the GluonNLP model zoo (``get_model``, called as
``gluonnlp.model.get_model``) and directories (``load_pretrained``: HuggingFace, converted,
pretraining and fine-tuning runs)."""
from .bert import BERTClassifier, BERTModel, ExportedBERT, import_exported
from .checkpoint import load_parameters, save_parameters
from .config import BERTConfig, get_config, list_configs, register_config
from .encoder import BERTEncoder
from .heads import BERTPooler, MLMDecoder, NSClassifier
from .pretrained import load_pretrained
from .transformer import PositionwiseFFN, TransformerCell
from .zoo import get_model

__all__ = ['BERTConfig', 'get_config', 'list_configs', 'register_config', 'BERTEncoder',
           'BERTPooler', 'NSClassifier', 'MLMDecoder', 'BERTModel', 'BERTClassifier',
           'ExportedBERT', 'import_exported', 'get_model', 'load_pretrained',
           'PositionwiseFFN', 'TransformerCell', 'load_parameters', 'save_parameters']
