"""Optimiser, weight-decay exclusion, learning-rate schedule and global-norm clipping."""
import mxnet as mx
import numpy as np
import pytest

from gluonbert.errors import ConfigError
from gluonbert.model import BERTModel, get_config
from gluonbert.train.config import OptimizerConfig
from gluonbert.train.optim import (BERTAdamW, WarmupLinearSchedule, clip_global_norm,
                                   create_optimizer, exclude_from_weight_decay)


def test_bertadamw_matches_reference_formula():
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 4)).astype('float32'), rng.normal(size=(5,)).astype('float32')]
    grads = [[rng.normal(size=w.shape).astype('float32') for w in weights] for _ in range(3)]
    lr, wd, b1, b2, eps, rescale = 0.1, 0.01, 0.9, 0.999, 1e-6, 0.5
    opt = BERTAdamW(learning_rate=lr, wd=wd, rescale_grad=rescale)
    updater = mx.optimizer.get_updater(opt)
    nd_weights = [mx.nd.array(w) for w in weights]
    ref = [w.copy() for w in weights]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for step in grads:
        updater([0, 1], [mx.nd.array(g) for g in step], nd_weights)
        for i, g in enumerate(step):
            g = g * rescale
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            ref[i] = ref[i] - lr * (m[i] / (np.sqrt(v[i]) + eps) + wd * ref[i])
    for got, want in zip(nd_weights, ref):    # the kernel holds beta2 in float32: ~1e-5
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-4, atol=2e-5)


def test_weight_decay_excludes_bias_and_layernorm():
    net = BERTModel(get_config('bert_tiny_test'))
    excluded = exclude_from_weight_decay(net)
    params = net._collect_params_with_prefix()
    assert 'encoder.layer_norm.gamma' in excluded and 'decoder.3.bias' in excluded
    assert 'encoder.transformer_cells.0.attention_cell.proj_key.bias' in excluded
    for name, param in params.items():
        last = name.rsplit('.', 1)[-1]
        assert param.wd_mult == (0.0 if last in ('bias', 'gamma', 'beta') else 1.0), name
    assert params['word_embed.0.weight'].wd_mult == 1.0


def test_warmup_then_linear_decay():
    schedule = WarmupLinearSchedule(1.0, total_steps=10, warmup_ratio=0.2)
    lrs = [schedule(i) for i in range(10)]
    np.testing.assert_allclose(lrs[:2], [0.5, 1.0])
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:]))          # strictly decaying after
    np.testing.assert_allclose(lrs[2:4], [8 / 9, 7 / 9])
    assert lrs[-1] == pytest.approx(1 / 9)
    with pytest.raises(ConfigError):
        WarmupLinearSchedule(1.0, 0, 0.1)


@pytest.mark.parametrize('max_norm', [0.5, 100.0])
def test_clip_global_norm_on_every_device(max_norm):
    contexts = [mx.cpu(0), mx.cpu(1)]
    rng = np.random.default_rng(0)
    params = []
    values = [rng.normal(size=s).astype('float32') for s in ((4, 3), (7,))]
    for i, value in enumerate(values):
        p = mx.gluon.Parameter(f'p{i}', shape=value.shape)
        p.initialize(ctx=contexts)
        for g in p.list_grad():
            g[:] = value
        params.append(p)
    norm = clip_global_norm(params, max_norm)
    expected = np.sqrt(sum((v ** 2).sum() for v in values))
    np.testing.assert_allclose(norm.asnumpy(), [expected], rtol=1e-5)
    scale = min(1.0, max_norm / expected)
    for p, value in zip(params, values):
        for g in p.list_grad():                          # same result on both devices
            np.testing.assert_allclose(g.asnumpy(), value * scale, rtol=1e-5)


def test_clipping_inside_bertadamw_equals_clipped_gradients():
    """Clipping handed to BERTAdamW's update moves the weights as clipped gradients do."""
    contexts = [mx.cpu(0), mx.cpu(1)]
    rng = np.random.default_rng(1)
    shapes = ((5, 3), (3,))
    start = [rng.normal(size=s).astype('float32') for s in shapes]
    grads = [rng.normal(size=s).astype('float32') * 10 for s in shapes]

    def two_updates(fused):
        params = []
        for i, value in enumerate(start):
            p = mx.gluon.Parameter(f'w{i}', shape=value.shape)
            p.initialize(ctx=contexts)
            p.set_data(mx.nd.array(value))
            params.append(p)
        trainer = mx.gluon.Trainer(params, BERTAdamW(learning_rate=0.1, wd=0.01),
                                   update_on_kvstore=False, kvstore=None)
        norms = []
        for step in range(2):
            for p, g in zip(params, grads):
                for d in p.list_grad():
                    d[:] = g * (step + 1)
                for w in p.list_data():
                    w._fresh_grad = True                 # as backward() would mark it
            norms.append(clip_global_norm(params, 1.0, trainer.optimizer if fused else None))
            trainer.update(1)
        return [p.list_data() for p in params], norms

    fused, fused_norms = two_updates(True)
    plain, plain_norms = two_updates(False)
    for a, b in zip(fused_norms, plain_norms):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6)
    for per_device_a, per_device_b in zip(fused, plain):
        for a, b in zip(per_device_a, per_device_b):          # both devices, every weight
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(fused[0][0].asnumpy(), start[0])  # the weights moved


def test_create_optimizer_and_config_errors():
    assert isinstance(create_optimizer(OptimizerConfig()), BERTAdamW)
    lamb = create_optimizer(OptimizerConfig(name='lamb', lr=2e-3, weight_decay=0.1))
    assert isinstance(lamb, mx.optimizer.LAMB) and lamb.wd == 0.1 and lamb.lr == 2e-3
    with pytest.raises(ConfigError, match="name='sgd'"):
        OptimizerConfig(name='sgd')
    with pytest.raises(ConfigError, match='accumulate=0'):
        OptimizerConfig(accumulate=0)
    with pytest.raises(ConfigError, match='warmup_ratio=1.5'):
        OptimizerConfig(warmup_ratio=1.5)
