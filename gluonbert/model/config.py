"""BERT hyper-parameters: one dataclass travels from the name of a model to every block.

The named configurations follow GluonNLP 0.10's ``bert_hparams`` so that a GluonNLP model-zoo
checkpoint loads into a model built from the same name; ``from_hf_config`` reads a HuggingFace
``config.json``.
"""
import dataclasses
import json
import os

from ..errors import ConfigError

__all__ = ['BERTConfig', 'get_config', 'list_configs', 'register_config']


@dataclasses.dataclass(frozen=True)
class BERTConfig:
    """Shape and regularisation of a BERT model.

    Parameters
    ----------
    vocab_size : int
        Number of WordPiece tokens, V.
    units : int
        Width of every hidden state, C.
    hidden_size : int
        Inner width of the position-wise feed-forward network (4 C in BERT).
    num_layers : int
        Number of transformer cells, L.
    num_heads : int
        Attention heads per cell; ``units`` must be divisible by it.
    max_length : int
        Rows of the learned position table: the longest sequence the model accepts.
    token_type_vocab_size : int
        Number of segment ids (2: sentence A and sentence B).
    dropout : float
        Dropout on embeddings, attention weights, and cell outputs (train mode only).
    layer_norm_eps : float
        Epsilon of every LayerNorm (1e-12 as in the original BERT and GluonNLP's encoder).
    tie_word_embeddings : bool
        The masked-LM output layer shares the word-embedding table (True: BERT, GluonNLP and
        HF's default). False gives it a (V, C) weight of its own (HF's
        ``tie_word_embeddings=False``): the embedding rows of tokens rare in the training text
        then move only where those tokens occur, instead of all being pushed the same way by
        the output softmax (see ``docs/pretraining.md``).
    """
    vocab_size: int = 30522
    units: int = 768
    hidden_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    max_length: int = 512
    token_type_vocab_size: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    tie_word_embeddings: bool = True

    def __post_init__(self):
        positive = ('vocab_size', 'units', 'hidden_size', 'num_layers', 'num_heads',
                    'max_length', 'token_type_vocab_size')
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f'BERTConfig.{name}={value!r}: expected a positive integer')
        if self.units % self.num_heads:
            raise ConfigError(f'BERTConfig.units={self.units} is not divisible by '
                              f'num_heads={self.num_heads}: expected units divisible by num_heads')
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f'BERTConfig.dropout={self.dropout!r}: expected 0 <= dropout < 1')
        if not self.layer_norm_eps > 0:
            raise ConfigError(f'BERTConfig.layer_norm_eps={self.layer_norm_eps!r}: expected > 0')
        if not isinstance(self.tie_word_embeddings, bool):
            raise ConfigError(f'BERTConfig.tie_word_embeddings={self.tie_word_embeddings!r}: '
                              'expected true or false')

    def replace(self, **changes):
        """A copy with some fields changed (e.g. ``vocab_size`` to match a vocabulary)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, source='<dict>'):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f'{source}: unknown BERTConfig fields {unknown}; '
                              f'expected some of {sorted(known)}')
        return cls(**values)

    @classmethod
    def from_hf_config(cls, path_or_dict):
        """Reads a HuggingFace ``BertConfig`` (a ``config.json`` path, its folder, or a dict).

        Only post-LN BERT with absolute positions and GELU is representable; anything else is
        refused with the offending key.
        """
        source = '<dict>'
        if isinstance(path_or_dict, (str, os.PathLike)):
            source = str(path_or_dict)
            if os.path.isdir(source):
                source = os.path.join(source, 'config.json')
            try:
                with open(source, encoding='utf-8') as f:
                    hf = json.load(f)
            except FileNotFoundError as err:
                raise ConfigError(f'{source}: no such file; expected a HuggingFace '
                                  'config.json') from err
            except json.JSONDecodeError as err:
                raise ConfigError(f'{source}:{err.lineno}: not valid JSON ({err.msg})') from err
        else:
            hf = dict(path_or_dict)
        act = hf.get('hidden_act', 'gelu')
        if act not in ('gelu', 'gelu_python'):
            raise ConfigError(f'{source}: hidden_act={act!r}; gluonbert implements the exact '
                              "(erf) GELU of BERT, expected 'gelu'")
        pos = hf.get('position_embedding_type', 'absolute')
        if pos != 'absolute':
            raise ConfigError(f"{source}: position_embedding_type={pos!r}; expected 'absolute'")
        for key in ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
                    'intermediate_size'):
            if key not in hf:
                raise ConfigError(f'{source}: missing key {key!r} of a BERT config.json')
        return cls(vocab_size=hf['vocab_size'], units=hf['hidden_size'],
                   hidden_size=hf['intermediate_size'], num_layers=hf['num_hidden_layers'],
                   num_heads=hf['num_attention_heads'],
                   max_length=hf.get('max_position_embeddings', 512),
                   token_type_vocab_size=hf.get('type_vocab_size', 2),
                   dropout=hf.get('hidden_dropout_prob', 0.1),
                   layer_norm_eps=hf.get('layer_norm_eps', 1e-12),
                   tie_word_embeddings=hf.get('tie_word_embeddings', True))

    def to_hf_config(self):
        """The equivalent HuggingFace ``BertConfig`` as a JSON-serialisable dict."""
        return {'architectures': ['BertModel'], 'model_type': 'bert',
                'vocab_size': self.vocab_size, 'hidden_size': self.units,
                'intermediate_size': self.hidden_size, 'num_hidden_layers': self.num_layers,
                'num_attention_heads': self.num_heads,
                'max_position_embeddings': self.max_length,
                'type_vocab_size': self.token_type_vocab_size,
                'hidden_dropout_prob': self.dropout,
                'attention_probs_dropout_prob': self.dropout,
                'layer_norm_eps': self.layer_norm_eps, 'hidden_act': 'gelu',
                'position_embedding_type': 'absolute', 'initializer_range': 0.02,
                'pad_token_id': 0, 'tie_word_embeddings': self.tie_word_embeddings}


_CONFIGS = {
    # GluonNLP 0.10 names (Devlin et al. BERT-base and BERT-large).
    'bert_12_768_12': BERTConfig(units=768, hidden_size=3072, num_layers=12, num_heads=12),
    'bert_24_1024_16': BERTConfig(units=1024, hidden_size=4096, num_layers=24, num_heads=16),
    # Small models (Turc et al. 2019 sizes) for laptops and quick experiments.
    'bert_4_256_4': BERTConfig(units=256, hidden_size=1024, num_layers=4, num_heads=4),
    'bert_6_384_12': BERTConfig(units=384, hidden_size=1536, num_layers=6, num_heads=12),
    # The d2l.ai BERT chapter's size (2 layers, 128 hidden, 2 heads).
    'bert_2_128_2': BERTConfig(vocab_size=20000, units=128, hidden_size=256, num_layers=2,
                               num_heads=2, max_length=512, dropout=0.1),
    # Its width with 4 layers of 4 heads: recipe 2 of docs/pretraining.md (depth is what
    # lifted its held-out next-sentence accuracy; every layer adds little next to the MLM
    # output layer over a 30,522-token vocabulary).
    'bert_4_128_4': BERTConfig(vocab_size=30522, units=128, hidden_size=256, num_layers=4,
                               num_heads=4, max_length=512, dropout=0.1),
    # Tiny: unit tests.
    'bert_tiny_test': BERTConfig(vocab_size=100, units=32, hidden_size=64, num_layers=2,
                                 num_heads=4, max_length=64, dropout=0.1),
}


def register_config(name, config):
    """Adds a named configuration (refuses to overwrite an existing name)."""
    if name in _CONFIGS:
        raise ConfigError(f'config {name!r} already exists')
    if not isinstance(config, BERTConfig):
        raise ConfigError(f'config {name!r}: expected a BERTConfig, got {type(config).__name__}')
    _CONFIGS[name] = config


def list_configs():
    """Names accepted by :func:`get_config` and :func:`gluonbert.get_model`."""
    return sorted(_CONFIGS)


def get_config(name, **overrides):
    """The named configuration, optionally with fields replaced (e.g. ``vocab_size``)."""
    if isinstance(name, BERTConfig):
        return name.replace(**overrides) if overrides else name
    try:
        config = _CONFIGS[name]
    except KeyError:
        raise ConfigError(f'unknown model {name!r}; expected one of {list_configs()}') from None
    return config.replace(**overrides) if overrides else config
