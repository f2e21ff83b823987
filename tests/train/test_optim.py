"""Optimiser (BERTAdamW is BERT's Adam, also in float16 with a master copy, and GluonNLP's
bertadam), weight-decay exclusion, the engine's Trainer, learning-rate schedule and global-norm
clipping."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluonbert.errors import ConfigError
from gluonbert.model import BERTClassifier, BERTModel, get_config
from gluonbert.train.config import OptimizerConfig
from gluonbert.train.optim import (AdamW, BERTAdamW, WarmupLinearSchedule, clip_global_norm,
                                   create_optimizer, exclude_from_weight_decay)


def _torch_adamw_run(weights, grads, lrs, wd, eps, rescale, clip_scales):
    """torch.optim.AdamW over ``grads`` (one list per step), lr changed every step."""
    torch = pytest.importorskip('torch')
    params = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    opt = torch.optim.AdamW(params, lr=lrs[0], betas=(0.9, 0.999), eps=eps, weight_decay=wd,
                            foreach=False)
    for step, lr, scale in zip(grads, lrs, clip_scales):
        for group in opt.param_groups:
            group['lr'] = lr
        for p, g in zip(params, step):
            p.grad = torch.tensor(g * rescale * scale)
        opt.step()
    return [p.detach().numpy() for p in params]


class _Pair(mx.gluon.Block):
    """Two parameters, so that the checkpoint module can name them."""

    def __init__(self, weights):
        super().__init__()
        with self.name_scope():
            self.a = self.params.get('a', shape=weights[0].shape)
            self.b = self.params.get('b', shape=weights[1].shape)
        self.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
        self.a.set_data(mx.nd.array(weights[0]))
        self.b.set_data(mx.nd.array(weights[1]))


@pytest.mark.parametrize('resume_at', [None, 2])
def test_adamw_equals_torch_adamw(tmp_path, resume_at):
    """``adamw`` on the same gradients moves the weights as ``torch.optim.AdamW`` (epsilon,
    decoupled weight decay, per-step bias correction), after 1 and 5 updates with a changing
    learning rate, on two devices, with clipping folded in, and across a checkpoint: a fresh
    trainer loading the state saved after ``resume_at`` updates continues exactly."""
    from gluonbert.train import checkpoint as ckpt
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=(4, 3)).astype('float32'), rng.normal(size=(6,)).astype('float32')]
    grads = [[rng.normal(size=w.shape).astype('float32') for w in weights] for _ in range(5)]
    lrs = [1e-2, 3e-2, 2e-2, 1e-2, 5e-3]
    wd, eps, rescale = 0.05, 1e-6, 0.5

    def make(start):
        net = _Pair(start)
        opt = create_optimizer(OptimizerConfig(name='adamw', lr=lrs[0], weight_decay=wd,
                                               epsilon=eps))
        opt.rescale_grad = rescale
        trainer = mx.gluon.Trainer(net.collect_params(), opt, kvstore=None,
                                   update_on_kvstore=False)
        return net, trainer

    def steps(net, trainer, first, last):
        params, scales = [net.a, net.b], []
        for step in range(first, last):
            for p, g in zip(params, grads[step]):
                for d in p.list_grad():
                    d[:] = g
                for w in p.list_data():
                    w._fresh_grad = True
            trainer.set_learning_rate(lrs[step])
            norm = clip_global_norm(params, 2.0, trainer.optimizer)
            scales.append(min(1.0, 2.0 / (float(norm.asnumpy()[0]) + 1e-6)))
            trainer.update(1)
        return scales

    net, trainer = make(weights)
    assert isinstance(trainer.optimizer, AdamW)
    scales = steps(net, trainer, 0, 1)
    for got, want in zip((net.a, net.b), _torch_adamw_run(weights, grads[:1], lrs, wd, eps,
                                                          rescale, scales)):
        for data in got.list_data():
            np.testing.assert_allclose(data.asnumpy(), want, rtol=1e-6, atol=1e-6)
    if resume_at is None:
        scales += steps(net, trainer, 1, 5)
    else:
        scales += steps(net, trainer, 1, resume_at)
        path = ckpt.save_checkpoint(str(tmp_path), net, trainer, resume_at, {}, 0, {})
        net, trainer = make([np.zeros_like(w) for w in weights])
        ckpt.load_checkpoint(path, net, trainer)
        scales += steps(net, trainer, resume_at, 5)
    assert min(scales) < 1.0                                  # clipping was exercised
    expected = _torch_adamw_run(weights, grads, lrs, wd, eps, rescale, scales)
    for got, want in zip((net.a, net.b), expected):
        for data in got.list_data():                          # both devices
            np.testing.assert_allclose(data.asnumpy(), want, rtol=1e-6, atol=1e-6)


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
    adamw = create_optimizer(OptimizerConfig(name='adamw', lr=3e-5, epsilon=1e-8))
    assert type(adamw) is AdamW and adamw.lr == 3e-5 and adamw.epsilon == 1e-8
    lamb = create_optimizer(OptimizerConfig(name='lamb', lr=2e-3, weight_decay=0.1))
    assert isinstance(lamb, mx.optimizer.LAMB) and lamb.wd == 0.1 and lamb.lr == 2e-3
    with pytest.raises(ConfigError, match="name='sgd'"):
        OptimizerConfig(name='sgd')
    with pytest.raises(ConfigError, match='accumulate=0'):
        OptimizerConfig(accumulate=0)
    with pytest.raises(ConfigError, match='warmup_ratio=1.5'):
        OptimizerConfig(warmup_ratio=1.5)


def _bert_adam_reference(w, grads, lr, wd, beta1=0.9, beta2=0.999, eps=1e-6, rescale=1.0):
    """GluonNLP's bertadam in NumPy: no bias correction, decoupled weight decay."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        g = g * rescale
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr * (m / (np.sqrt(v) + eps) + wd * w)
    return w


@pytest.mark.parametrize('wd', [0.0, 0.1])
def test_bert_adamw_matches_reference(wd):
    rng = np.random.RandomState(0)
    w0 = rng.normal(size=(5, 7)).astype('float32')
    grads = [rng.normal(size=(5, 7)).astype('float32') for _ in range(3)]
    opt = BERTAdamW(learning_rate=0.05, wd=wd, rescale_grad=0.5)
    weight = mx.nd.array(w0)
    state = opt.create_state(0, weight)
    for g in grads:
        opt.update(0, weight, mx.nd.array(g), state)
    expected = _bert_adam_reference(w0, grads, 0.05, wd, rescale=0.5)
    # MXNet's kernel rounds differently from NumPy (~1e-5 of the step); bias correction or
    # coupled weight decay would be off by 1e-2 and more.
    np.testing.assert_allclose(weight.asnumpy(), expected, rtol=1e-4, atol=2e-5)


def test_bert_adamw_float16_keeps_a_float32_master_copy():
    rng = np.random.RandomState(2)
    w0 = rng.normal(size=(6, 5)).astype('float32')
    grads = [rng.normal(size=w0.shape).astype('float32') for _ in range(4)]
    opt = BERTAdamW(learning_rate=1e-3, wd=0.01, multi_precision=True)
    weight = mx.nd.array(w0, dtype='float16')
    state = opt.create_state_multi_precision(0, weight)
    (mean, _), master = state
    assert master.dtype == np.float32 and mean.dtype == np.float32
    for g in grads:
        opt.update_multi_precision(0, weight, mx.nd.array(g, dtype='float16'), state)
    expected = _bert_adam_reference(w0, grads, 1e-3, 0.01)
    # The master copy follows the float32 update; the float16 weight is its rounding.
    np.testing.assert_allclose(master.asnumpy(), expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(weight.asnumpy(), master.asnumpy().astype('float16'), atol=1e-3)
    assert not np.allclose(master.asnumpy(), w0)


def test_registered_name_and_gluonnlp_equivalence():
    pytest.importorskip('gluonnlp')  # registers GluonNLP's 'bertadam'
    rng = np.random.RandomState(1)
    w0 = rng.normal(size=(4, 6)).astype('float32')
    grads = [rng.normal(size=w0.shape).astype('float32') for _ in range(3)]
    results = []
    for name in ('bertadamw', 'bertadam'):
        opt = mx.optimizer.create(name, learning_rate=0.01, wd=0.01)
        weight = mx.nd.array(w0)
        state = opt.create_state(0, weight)
        for g in grads:
            opt.update(0, weight, mx.nd.array(g), state)
        results.append(weight.asnumpy())
    assert not np.allclose(results[0], w0)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_make_trainer_trains_and_skips_decay_on_bias_and_layernorm():
    from gluonbert.train.config import OptimizerConfig
    from gluonbert.dist.cluster import Cluster
    from gluonbert.train.engine import make_trainer
    mx.random.seed(0)
    config = get_config('bert_tiny_test')
    net = BERTClassifier(BERTModel(config, use_decoder=False, use_classifier=False), 2)
    net.initialize(mx.init.Normal(0.02))
    net.hybridize(static_alloc=True)
    # lr 3e-3: 12 steps fit the 4 examples from any seed (1e-2 diverged for some seeds).
    trainer = make_trainer(net, OptimizerConfig(lr=3e-3, weight_decay=0.01),
                           Cluster([mx.cpu()], None))
    params = net.collect_params()
    no_decay = [p for n, p in params.items() if n.endswith(('bias', 'gamma', 'beta'))]
    decay = [p for n, p in params.items() if n.endswith('weight')]
    assert no_decay and decay
    assert all(p.wd_mult == 0.0 for p in no_decay)
    assert all(p.wd_mult == 1.0 for p in decay)
    ids = mx.nd.array(np.random.RandomState(0).randint(1, 100, (4, 8)), dtype='int32')
    seg = mx.nd.zeros((4, 8), dtype='int32')
    length = mx.nd.array([8, 5, 3, 8], dtype='int32')
    label = mx.nd.array([0, 1, 1, 0])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for _ in range(12):
        with autograd.record():
            loss = loss_fn(net(ids, seg, length), label).mean()
        loss.backward()
        trainer.step(1)
        losses.append(float(loss.asscalar()))
    assert losses[-1] < losses[0] * 0.5, losses
