"""GluonNLP 0.10 ``BERTModel`` for the MXNet loops of :mod:`benchmarks.impl_mxnet`, built
offline from ``BERTEncoder`` + ``BERTModel`` (never a ``dataset_name``: that downloads), set up
as GluonNLP's ``scripts/bert`` do: ``hybridize(static_alloc=True, static_shape=True)`` and the
``bertadam`` optimizer (which aggregates updates with ``multi_adamw_update``)."""
import mxnet as mx
from gluonnlp.model.bert import BERTClassifier, BERTEncoder, BERTModel

VALID_LENGTH_DTYPE = 'float32'
NOTE = "hybridize(static_alloc, static_shape), Trainer 'bertadam'"


def _bert(shape, use_decoder, use_classifier, dropout=None):
    dropout = shape.dropout if dropout is None else dropout
    encoder = BERTEncoder(num_layers=shape.num_layers, units=shape.units,
                          hidden_size=shape.hidden_size, max_length=shape.max_length,
                          num_heads=shape.num_heads, dropout=dropout, output_attention=False,
                          output_all_encodings=False, activation='gelu', layer_norm_eps=1e-12)
    return BERTModel(encoder, vocab_size=shape.vocab_size, token_type_vocab_size=2,
                     units=shape.units, embed_size=shape.units, use_pooler=True,
                     use_decoder=use_decoder, use_classifier=use_classifier)


def _init(net):
    net.initialize(mx.init.Normal(0.02))
    return net


def classifier(shape):
    return _init(BERTClassifier(_bert(shape, False, False), num_classes=2,
                                dropout=shape.dropout))


def encoder(shape):
    return _init(_bert(shape, False, False, dropout=0.0))


def pretrainer(shape):
    return _init(_bert(shape, True, True))


def trainer(net, lr):
    return mx.gluon.Trainer(net.collect_params(), 'bertadam',
                            {'learning_rate': lr, 'wd': 0.01})


def prepare(net, inputs, training):
    net.hybridize(static_alloc=True, static_shape=True)
