"""The speed-oriented formulations compute the same function as the plain ones.

* ``SelfAttention`` with an additive ``attention_bias`` vs ``valid_length`` (softmax with
  lengths): context, weights and gradients;
* a whole ``BERTModel`` built with ``kernels=True`` (gluonbert's CPU kernels) vs the same model
  on MXNet's operators;
* a ``BERTClassifier``, which runs its last layer on ``[CLS]`` alone, vs the whole computation.

The kernels themselves are tested in ``test_cpu_kernels.py``.
"""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluonbert import kernels as cpu_kernels
from gluonbert.model import BERTClassifier, BERTModel, get_config
from gluonbert.model.attention import SelfAttention
from gluonbert.model.encoder import attention_bias
from gluonbert.model.layer_norm import LayerNorm


def test_layer_norm_keeps_nn_layer_norm_parameters():
    block = LayerNorm(1e-12, 8, prefix='layernorm0_')
    assert isinstance(block, gluon.nn.LayerNorm)
    assert sorted(block._collect_params_with_prefix()) == ['beta', 'gamma']
    with pytest.raises(ValueError, match='in_channels'):
        LayerNorm(1e-12)


def test_attention_bias_values():
    x = mx.nd.zeros((4, 2, 3))                       # (T, B, C)
    bias = attention_bias(mx.nd, mx.nd.array([4, 2]), x, num_heads=3).asnumpy()
    assert bias.shape == (6, 4, 4)
    assert (bias[:3] == 0).all()                     # sequence 0: every key is real
    assert (bias[3:, :, :2] == 0).all() and (bias[3:, :, 2:] <= -1e17).all()


def test_attention_bias_path_matches_length_softmax():
    rng = np.random.RandomState(1)
    t, b, c, h = 7, 3, 16, 4
    attention = SelfAttention(c, h)
    attention.initialize(mx.init.Normal(0.3))
    x = mx.nd.array(rng.normal(size=(t, b, c)))
    lengths = mx.nd.array([7, 3, 1])
    head_lengths = mx.nd.array(np.repeat(lengths.asnumpy(), h), dtype='int32')
    bias = attention_bias(mx.nd, lengths, x, h)
    head = mx.nd.array(rng.normal(size=(t, b, c)))
    outputs = []
    for args in ((head_lengths, None), (None, bias)):
        x.attach_grad()
        with autograd.record():
            context, weights = attention(x, *args)
        context.backward(head)
        outputs.append((context.asnumpy(), weights.asnumpy(), x.grad.asnumpy(),
                        attention.query_weight.grad().asnumpy()))
    for new, old in zip(outputs[1], outputs[0]):
        np.testing.assert_allclose(new, old, rtol=1e-4, atol=1e-5)
    weights = outputs[1][1]                           # (B, H, T, T)
    assert np.abs(weights[2, :, :, 1:]).max() == 0    # only key 0 of sequence 2 is real
    np.testing.assert_allclose(weights.sum(-1), 1, rtol=1e-5)


def test_kernel_training_graph_matches_plain_model():
    if not cpu_kernels.available():
        pytest.skip('no C++ compiler: the kernels cannot be built here')
    config = get_config('bert_tiny_test', dropout=0.0)
    rng = np.random.RandomState(2)
    ids = mx.nd.array(rng.randint(1, 100, (3, 10)), dtype='int32')
    seg = mx.nd.array(rng.randint(0, 2, (3, 10)), dtype='int32')
    length = mx.nd.array([10, 6, 2], dtype='int32')
    positions = mx.nd.array([[1, 2], [0, 5], [1, 1]], dtype='int32')
    results = []
    for kernels in (False, True):
        mx.random.seed(3)
        net = BERTModel(config, kernels=kernels)
        net.initialize()
        layer_norms = []
        net.apply(lambda blk: layer_norms.append(blk) if isinstance(blk, LayerNorm) else None)
        assert len(layer_norms) == 2 * config.num_layers + 2
        assert all(blk._kernels == kernels for blk in layer_norms)
        net.hybridize(static_alloc=True, static_shape=True)
        with autograd.record():
            outputs = net(ids, seg, length, positions)
            loss = sum((o ** 2).sum() for o in outputs)
        loss.backward()
        ops = {node['op'] for node in json.loads(net._cached_graph[1].tojson())['nodes']}
        assert ('gluonbert_self_attention' in ops) == kernels, ops
        grads = {n: p.grad().asnumpy() for n, p in net._collect_params_with_prefix().items()}
        results.append(([o.asnumpy() for o in outputs], grads))
    for new, old in zip(results[1][0], results[0][0]):
        np.testing.assert_allclose(new, old, rtol=1e-4, atol=1e-4)
    assert results[1][1].keys() == results[0][1].keys()
    for name in results[0][1]:
        np.testing.assert_allclose(results[1][1][name], results[0][1][name], rtol=1e-3,
                                   atol=1e-3, err_msg=name)


@pytest.mark.parametrize('kernels', [False, True])
def test_classifier_runs_last_layer_on_cls_only(kernels, tmp_path):
    """A BERTClassifier computes its last layer on [CLS] alone after the attention, called
    imperatively or hybridized: scores and gradients equal the whole computation (its
    BERTModel called on its own, then the classifier layer), in training and in a classifier
    built for inference; its BERTModel called on its own keeps the whole sequence."""
    if kernels and not cpu_kernels.available():
        pytest.skip('no C++ compiler: the kernels cannot be built here')
    config = get_config('bert_tiny_test', dropout=0.0)
    rng = np.random.RandomState(5)
    ids = mx.nd.array(rng.randint(1, 100, (3, 9)), dtype='int32')
    seg = mx.nd.array(rng.randint(0, 2, (3, 9)), dtype='int32')
    length = mx.nd.array([9, 4, 1], dtype='int32')
    head = mx.nd.array(rng.normal(size=(3, 3)))
    results = {}
    for mode in ('whole', 'imperative', 'hybridized'):
        mx.random.seed(6)
        net = BERTClassifier(BERTModel(config, use_decoder=False, use_classifier=False,
                                       kernels=kernels), 3)
        net.initialize(mx.init.Normal(0.1))
        if mode == 'hybridized':
            net.hybridize(static_alloc=True)
        with autograd.record():
            if mode == 'whole':
                scores = net.classifier(net.bert(ids, seg, length)[1])
            else:
                scores = net(ids, seg, length)
            loss = (scores * head).sum()
        loss.backward()
        grads = {n: p.grad().asnumpy() for n, p in net._collect_params_with_prefix().items()}
        results[mode] = (scores.asnumpy(), grads, net)
    whole_scores, whole_grads, _ = results['whole']
    for mode in ('imperative', 'hybridized'):
        np.testing.assert_allclose(results[mode][0], whole_scores, rtol=1e-5, atol=1e-6)
        for name, grad in whole_grads.items():
            np.testing.assert_allclose(results[mode][1][name], grad, rtol=1e-4, atol=1e-5,
                                       err_msg=f'{mode} {name}')
    net = results['hybridized'][2]
    symbol = net._cached_graph[1]
    ffn = [n['name'] for n in json.loads(symbol.tojson())['nodes']
           if n['op'] == 'FullyConnected' and 'ffn_1' in n['name']]
    internals = symbol.get_internals()
    shapes = dict(data0=(3, 9), data1=(3, 9), data2=(3,))
    assert internals[f'{ffn[-1]}_output'].infer_shape(**shapes)[1][0][:2] == (1, 3)
    assert internals[f'{ffn[0]}_output'].infer_shape(**shapes)[1][0][:2] == (9, 3)
    net.save_parameters(str(tmp_path / 'clf.params'))
    served = BERTClassifier(BERTModel(config, use_decoder=False, use_classifier=False,
                                      kernels=kernels, inference=True), 3)
    served.load_parameters(str(tmp_path / 'clf.params'))
    served.hybridize(static_alloc=True)
    np.testing.assert_allclose(served(ids, seg, length).asnumpy(), whole_scores, rtol=1e-5,
                               atol=1e-6)
    sequence = net.bert(ids, seg, length)[0]
    assert sequence.shape == (3, 9, config.units)
