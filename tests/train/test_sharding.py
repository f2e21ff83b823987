"""Data parallelism is exact: k steps on 2 (or 3) CPU contexts with ``split_and_load`` give the
parameters of 1 context on the same global batch, and gradient accumulation equals one big
batch.

The self-attention key bias is left out of the parameter comparison: its true gradient is
exactly zero (it adds the same ``q . b_k`` to every score of a query, which softmax ignores),
so what it receives is float round-off, which Adam normalises to full-size steps of random sign.
Its gradient is checked to be ~0 instead.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluonbert.data import PretrainingBatch
from gluonbert.dist.cluster import split_batch
from gluonbert.model import BERTModel, get_config
from gluonbert.model.init import TruncNorm
from gluonbert.train.engine import Update
from gluonbert.train.pretrain import PretrainingLoss

from .synthetic import make_batch, make_engine


def train(num_devices, steps=4, micro_batches=None, accumulate=1, optimizer='bertadam'):
    """Trains a tiny BERT without dropout; returns its parameters (device 0) by name."""
    mx.random.seed(0)
    contexts = [mx.cpu(i) for i in range(num_devices)]
    net = BERTModel(get_config('bert_tiny_test', dropout=0.0))
    net.initialize(TruncNorm(0.02), ctx=contexts)
    net.hybridize(static_alloc=True)
    engine = make_engine(net, num_devices, optimizer, accumulate)   # clips at 1.0
    for batches in micro_batches[:steps]:
        engine.step(Update(batches))
    return {name: p.data(contexts[0]).asnumpy()
            for name, p in net._collect_params_with_prefix().items()}


def assert_same_params(a, b, rtol=1e-5, atol=1e-6):
    compared = 0
    for name in a:
        if 'proj_key.bias' in name:
            continue
        np.testing.assert_allclose(b[name], a[name], rtol=rtol, atol=atol, err_msg=name)
        compared += 1
    assert compared > 30


@pytest.mark.parametrize('optimizer', ['bertadam', 'lamb'])
def test_two_devices_equal_one(optimizer):
    rng = np.random.default_rng(0)
    batches = [[make_batch(rng, batch=7)] for _ in range(4)]      # 7 rows: an uneven 4 + 3 split
    one = train(1, micro_batches=batches, optimizer=optimizer)
    two = train(2, micro_batches=batches, optimizer=optimizer)
    assert_same_params(one, two)
    moved = np.abs(two['encoder.transformer_cells.0.ffn.ffn_1.weight']
                   - train(1, steps=0, micro_batches=batches)[
                       'encoder.transformer_cells.0.ffn.ffn_1.weight']).max()
    assert moved > 1e-4                                           # training did change weights


def assert_moved(trained, micro_batches, rtol=1e-4):
    """Training changed most parameters (the equalities above compare trained weights)."""
    initial = train(1, steps=0, micro_batches=micro_batches)
    moved = [n for n in trained if not np.allclose(trained[n], initial[n], rtol=rtol, atol=0)]
    assert len(moved) > len(trained) // 2, moved


def test_three_devices_equal_one():
    rng = np.random.default_rng(1)
    batches = [[make_batch(rng, batch=8)] for _ in range(3)]
    three = train(3, micro_batches=batches)
    assert_same_params(train(1, micro_batches=batches), three)
    assert_moved(three, batches)


def test_a_batch_smaller_than_the_devices_runs_on_fewer():
    """A 2-row batch on 3 devices: the third device gets no rows and a zero gradient."""
    rng = np.random.default_rng(4)
    batches = [[make_batch(rng, batch=b)] for b in (7, 2, 1)]
    three = train(3, micro_batches=batches)
    assert_same_params(train(1, micro_batches=batches), three)
    assert_moved(three, batches)


def test_accumulation_equals_one_big_batch():
    rng = np.random.default_rng(2)
    halves = [[make_batch(rng, batch=4, all_weights=True) for _ in range(2)] for _ in range(3)]
    whole = [[PretrainingBatch(*[np.concatenate([a, b]) for a, b in zip(*pair)])]
             for pair in halves]
    accumulated = train(2, micro_batches=halves, accumulate=2)
    assert_same_params(train(1, micro_batches=whole), accumulated)
    assert_moved(accumulated, whole)


def test_key_bias_gradient_is_round_off_only():
    net = BERTModel(get_config('bert_tiny_test', dropout=0.0))
    net.initialize(TruncNorm(0.02))
    batch = make_batch(np.random.default_rng(3))
    shard = PretrainingBatch(*split_batch(batch, [mx.cpu()])[0])
    with autograd.record():
        loss, _ = PretrainingLoss()(net, shard, totals=[float(batch.masked_weights.sum()), 8])
    loss.backward()
    params = net._collect_params_with_prefix()
    key = params['encoder.transformer_cells.0.attention_cell.proj_key.bias'].grad().asnumpy()
    query = params['encoder.transformer_cells.0.attention_cell.proj_query.bias'].grad().asnumpy()
    assert np.abs(key).max() < 1e-4 * np.abs(query).max()
