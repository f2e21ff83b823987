"""gluonbert models for the MXNet loops of :mod:`benchmarks.impl_mxnet`, set up the way
``gluonbert.perf`` recommends (hybridized with static memory, fused Adam)."""
import mxnet as mx

from gluonbert import perf
from gluonbert.model import BERTClassifier, BERTConfig, BERTModel

VALID_LENGTH_DTYPE = 'int32'
NOTE = 'gluonbert.perf.optimize / gluonbert.perf.make_trainer'


def _config(shape, dropout=None):
    return BERTConfig(vocab_size=shape.vocab_size, units=shape.units,
                      hidden_size=shape.hidden_size, num_layers=shape.num_layers,
                      num_heads=shape.num_heads, max_length=shape.max_length,
                      dropout=shape.dropout if dropout is None else dropout)


def _init(net):
    net.initialize(mx.init.Normal(0.02))
    return net


def classifier(shape):
    bert = BERTModel(_config(shape), use_decoder=False, use_classifier=False)
    return _init(BERTClassifier(bert, num_classes=2, dropout=shape.dropout))


def encoder(shape):
    return _init(BERTModel(_config(shape, dropout=0.0), use_decoder=False,
                           use_classifier=False))


def pretrainer(shape):
    return _init(BERTModel(_config(shape)))


def trainer(net, lr):
    return perf.make_trainer(net.collect_params(), learning_rate=lr, weight_decay=0.01)


def prepare(net, inputs, training):
    perf.optimize(net, *inputs, training=training)
