"""gluonbert models for the MXNet loops of :mod:`benchmarks.impl_mxnet`, set up as the
training engine sets them up (``gluonbert.perf.optimize``: static memory; the engine's one
``Trainer`` factory: BERT's fused Adam, no decay on biases and LayerNorm)."""
import mxnet as mx

from gluonbert import perf
from gluonbert.model import BERTClassifier, BERTConfig, BERTModel

VALID_LENGTH_DTYPE = 'int32'
NOTE = 'gluonbert.perf.optimize / gluonbert.train.engine.make_trainer'


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
    from gluonbert.train.config import OptimizerConfig
    from gluonbert.train.devices import Cluster
    from gluonbert.train.engine import make_trainer
    contexts = list(net.collect_params().values())[0].list_ctx()
    kvstore = mx.kv.create('device') if len(contexts) > 1 else None
    return make_trainer(net, OptimizerConfig(lr=lr, weight_decay=0.01), Cluster(contexts, kvstore))


def prepare(net, inputs, training):
    perf.optimize(net, *inputs, training=training)
