"""gluonbert's CPU kernels (gluonbert/kernels/cpu_kernels.cc) against MXNet's own operators.

Each kernel is checked forward and backward, hybridized, with ``grad_req='add'``; the dropout
kernels also for their mask statistics, inference mode and seeding. Without a C++ compiler the
kernels cannot exist, and these tests skip; with one, a failed build fails them.
"""
import shutil

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluonbert import kernels as cpu_kernels
from gluonbert.model.dropout import Dropout
from gluonbert.model.layer_norm import LayerNorm, ResidualLayerNorm

if shutil.which('g++') is None and shutil.which('c++') is None:
    pytest.skip('no C++ compiler: the kernels cannot be built here', allow_module_level=True)


@pytest.fixture(scope='module', autouse=True)
def kernels():
    assert cpu_kernels.available(), 'the CPU kernels failed to build or load'


def _run(block, inputs, head, passes=1):
    """Output and gradients (of inputs and parameters) after ``passes`` backward passes."""
    for x in inputs:
        x.attach_grad(grad_req='add')
    for p in block.collect_params().values():
        p.grad_req = 'add'
    for _ in range(passes):
        with autograd.record():
            out = block(*inputs)
        out.backward(head)
    params = {n: p.grad().asnumpy() for n, p in block._collect_params_with_prefix().items()}
    return out.asnumpy(), [x.grad.asnumpy() for x in inputs], params


def _layer_norm(cls, kernel, *args):
    rng = np.random.RandomState(0)
    block = cls(1e-12, 24, *args, kernels=kernel)
    assert block._kernels == kernel
    block.initialize()
    block.gamma.set_data(mx.nd.array(rng.normal(size=24)))
    block.beta.set_data(mx.nd.array(rng.normal(size=24)))
    block.hybridize(static_alloc=True)
    return block


def _assert_twice(new, old):
    """``new`` ran two backward passes with grad_req='add', ``old`` (MXNet's operators) one.

    (The reference runs once: MXNet 1.9.1's own hybridized graph accumulates the second
    input of an ``elemwise_add`` wrongly with grad_req='add' on graph inputs.)
    """
    np.testing.assert_allclose(new[0], old[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(new[1], old[1]):
        np.testing.assert_allclose(a, 2 * b, rtol=1e-4, atol=1e-4)
    assert new[2].keys() == old[2].keys()
    for name in old[2]:
        np.testing.assert_allclose(new[2][name], 2 * old[2][name], rtol=1e-4, atol=1e-4)


def test_layer_norm_kernel_matches_operator():
    rng = np.random.RandomState(1)
    x = mx.nd.array(rng.normal(size=(5, 3, 24)) * 3 + 1)
    head = mx.nd.array(rng.normal(size=(5, 3, 24)))
    old = _run(_layer_norm(LayerNorm, False), [x.copy()], head, passes=1)
    new = _run(_layer_norm(LayerNorm, True), [x.copy()], head, passes=2)
    _assert_twice(new, old)
    assert np.abs(new[2]['gamma']).max() > 0


def test_residual_layer_norm_kernel_matches_operators_without_dropout():
    rng = np.random.RandomState(2)
    data, residual = (mx.nd.array(rng.normal(size=(7, 2, 24))) for _ in range(2))
    head = mx.nd.array(rng.normal(size=(7, 2, 24)))
    old, new = (_run(_layer_norm(ResidualLayerNorm, kernel, 0.0), [data.copy(), residual.copy()],
                     head, passes=1 + kernel) for kernel in (False, True))
    _assert_twice(new, old)


def test_residual_layer_norm_kernel_with_dropout_equals_its_mask():
    """LayerNorm(residual + data * keep / (1 - p)) with the kernel's own mask, and gradients."""
    rng = np.random.RandomState(3)
    p = 0.3
    data, residual = (mx.nd.array(rng.normal(size=(50, 24))) for _ in range(2))
    gamma, beta = (mx.nd.array(rng.normal(size=24)) for _ in range(2))
    head = mx.nd.array(rng.normal(size=(50, 24)))
    train = mx.nd.ones((1,))
    inputs = [data, residual, gamma, beta]
    for x in inputs:
        x.attach_grad()
    with autograd.record():
        out, keep, _, _ = mx.nd.gluonbert_add_dropout_layer_norm(*inputs, train, eps=1e-12, p=p)
    out.backward(head)
    got = [out.asnumpy()] + [x.grad.asnumpy() for x in inputs]
    mask = keep.asnumpy().astype('float32')
    assert 0.6 < mask.mean() < 0.8 and set(np.unique(mask)) == {0.0, 1.0}
    scale = mx.nd.array(mask / (1 - p))
    with autograd.record():
        ref = mx.nd.LayerNorm(residual + data * scale, gamma, beta, axis=-1, eps=1e-12)
    ref.backward(head)
    expected = [ref.asnumpy()] + [x.grad.asnumpy() for x in inputs]
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert (got[1][mask == 0] == 0).all()                 # dropped values get no gradient


def test_dropout_kernel_mask_scale_and_gradient():
    block = Dropout(0.1, kernels=True)
    block.hybridize(static_alloc=True)
    x = mx.nd.ones((1000, 1000))
    x.attach_grad()
    with autograd.record():
        y = block(x)
    y.backward()
    out = y.asnumpy()
    assert abs((out > 0).mean() - 0.9) < 0.002            # 1e6 draws: 4 standard deviations
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.9], rtol=1e-6)
    np.testing.assert_array_equal(x.grad.asnumpy(), out)  # d out / d x = keep / (1 - p)
    rows = (out > 0).mean(axis=1)
    assert rows.std() < 0.02                              # no row-wise pattern in the hash
    assert np.array_equal(block(x).asnumpy(), x.asnumpy())  # inference mode: identity


def test_dropout_kernel_follows_mxnet_seed():
    block = Dropout(0.5, kernels=True)
    block.hybridize()
    x = mx.nd.ones((64, 64))
    with autograd.train_mode():
        mx.random.seed(7)
        first, second = block(x).asnumpy(), block(x).asnumpy()
        mx.random.seed(7)
        again = block(x).asnumpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)


def _attention_inputs(seed, t=7, b=3, c=24, h=4):
    """Inputs, the additive mask (MXNet's operators) and the lengths per head (the kernel)."""
    from gluonbert.model.encoder import attention_bias
    rng = np.random.RandomState(seed)
    x = mx.nd.array(rng.normal(size=(t, b, c)))
    lengths = mx.nd.array([7, 4, 1])
    return rng, x, attention_bias(mx.nd, lengths, x, h), mx.nd.repeat(lengths, repeats=h)


def test_attention_kernel_matches_operators():
    """Context and weights, and the gradients of a loss on both, equal MXNet's operators'."""
    from gluonbert.model.attention import SelfAttention
    rng, x, bias, lengths = _attention_inputs(4)
    head_context = mx.nd.array(rng.normal(size=x.shape))
    head_weights = mx.nd.array(rng.normal(size=(3, 4, 7, 7)))
    results = []
    for kernel in (False, True):
        mx.random.seed(0)
        block = SelfAttention(24, 4, dropout=0.0, kernels=kernel)
        block.initialize(mx.init.Normal(0.5))
        if kernel:           # (MXNet 1.9.1's static_alloc graph of this block alone gives wrong
            block.hybridize(static_alloc=True)   # input gradients: the reference runs eagerly)
        x.attach_grad()
        with autograd.record():
            context, weights = block(x, lengths, bias)
            loss = (context * head_context).sum() + (weights * head_weights).sum()
        loss.backward()
        grads = {n: p.grad().asnumpy() for n, p in block._collect_params_with_prefix().items()}
        results.append((context.asnumpy(), weights.asnumpy(), x.grad.asnumpy(), grads))
    (c0, w0, g0, p0), (c1, w1, g1, p1) = results
    np.testing.assert_allclose(c1, c0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w1, w0, rtol=1e-5, atol=1e-6)
    assert np.abs(w1[2, :, :, 1:]).max() == 0            # sequence 2 has one real key
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-4)
    for name in p0:
        np.testing.assert_allclose(p1[name], p0[name], rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize('width', [24, 128, 256, 600])   # heads 6, 32, 64, 150 wide: each path
def test_inference_attention_kernel_matches_operators_at_real_positions(width):
    """The forward-only kernel: the context and weights of the real queries equal MXNet's,
    padding query rows are 0, the placeholder replaces unread weights, and a backward pass
    through it is an error that says what to do."""
    from gluonbert.model.attention import SelfAttention
    rng, x, bias, lengths = _attention_inputs(5, t=70, c=width)
    plain = SelfAttention(width, 4, dropout=0.3)
    plain.initialize(mx.init.Normal(0.3 * (24 / width) ** 0.5))
    context, weights = [a.asnumpy() for a in plain(x, lengths, bias)]   # inference mode

    def served(return_weights):
        block = SelfAttention(width, 4, 0.3, kernels=True, inference=True,
                              return_weights=return_weights)
        block.initialize()
        for name, param in plain._collect_params_with_prefix().items():
            block._collect_params_with_prefix()[name].set_data(param.data())
        block.hybridize(static_alloc=True)
        return block

    block = served(True)
    got_context, got_weights = [a.asnumpy() for a in block(x, lengths, bias)]
    for b, n in enumerate([7, 4, 1]):
        np.testing.assert_allclose(got_context[:n, b], context[:n, b], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_weights[b, :, :n], weights[b, :, :n], rtol=1e-5,
                                   atol=1e-6)
        assert not got_context[n:, b].any() and not got_weights[b, :, n:].any()
    block = served(False)
    got = block(x, lengths, bias)
    np.testing.assert_allclose(got[0].asnumpy(), got_context, rtol=1e-6)
    assert got[1].shape == (3, 4, 1, 1)
    x.attach_grad()
    with pytest.raises(mx.base.MXNetError, match='no gradient'):
        with autograd.record():
            out = block(x, lengths, bias)[0]
        out.backward()
        mx.nd.waitall()


def test_attention_kernel_dropout_equals_its_mask():
    """With dropout the context is MXNet's value product of the kernel's masked weights."""
    rng, x, bias, lengths = _attention_inputs(5)
    qkv = mx.nd.array(rng.normal(size=(7, 3, 72)))
    head = mx.nd.array(rng.normal(size=(7, 3, 24)))
    qkv.attach_grad()
    with autograd.record():
        context, weights, keep = mx.nd.gluonbert_self_attention(
            qkv, lengths, mx.nd.ones((1,)), heads=4, p=0.25)
    context.backward(head)
    got = (context.asnumpy(), qkv.grad.asnumpy())
    mask = keep.asnumpy()
    assert 0.6 < mask.mean() < 0.9
    assert (weights.asnumpy()[8:, :, 1:] == 0).all()     # sequence 2: one real key
    ref_qkv = qkv.copy()
    ref_qkv.attach_grad()
    with autograd.record():
        scores = mx.nd.contrib.interleaved_matmul_selfatt_qk(ref_qkv, heads=4)
        probs = mx.nd.softmax(scores + bias, axis=-1)
        dropped = probs * mx.nd.array(mask / 0.75)
        ref = mx.nd.contrib.interleaved_matmul_selfatt_valatt(ref_qkv, dropped, heads=4)
    ref.backward(head)
    np.testing.assert_allclose(weights.asnumpy(), probs.asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], ref.asnumpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], ref_qkv.grad.asnumpy(), rtol=1e-4, atol=1e-4)


def test_softmax_cross_entropy_kernel_and_both_gradients():
    """ce = lse - scores[label] and lse, each with MXNet's log_softmax as the reference; top is
    MXNet's argmax (the first maximum on ties)."""
    rng = np.random.RandomState(6)
    scores = mx.nd.array(rng.normal(size=(4, 3, 50)) * 8)
    scores[0, 0, 7] = scores[0, 0, 31] = scores[0, 0].max() + 1   # a tie: the first one wins
    scores[1, 2, 49] = scores[1, 2].max() + 1                     # the maximum in the tail
    label = mx.nd.array(rng.randint(0, 50, (4, 3)))
    head_ce, head_lse = (mx.nd.array(rng.normal(size=(4, 3))) for _ in range(2))
    results = []
    for kernel in (False, True):
        x = scores.copy()
        x.attach_grad()
        with autograd.record():
            if kernel:
                ce, lse, top = mx.nd.gluonbert_softmax_ce(x, label)
            else:
                lse = mx.nd.log(mx.nd.sum(mx.nd.exp(x), axis=-1))
                ce = -mx.nd.pick(mx.nd.log_softmax(x, axis=-1), label, axis=-1)
            loss = (ce * head_ce).sum() + (lse * head_lse).sum()
        loss.backward()
        results.append((ce.asnumpy(), lse.asnumpy(), x.grad.asnumpy()))
    for new, old in zip(results[1], results[0]):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(top.asnumpy(), mx.nd.argmax(scores, axis=-1).asnumpy())
    assert top.asnumpy()[0, 0] == 7 and top.asnumpy()[1, 2] == 49


@pytest.mark.slow
def test_kernel_benchmark_runs_every_case(tmp_path):
    """benchmarks/cpu_kernels.py --quick: every block timed with MXNet's operators and kernels."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / 'kernels.json'
    subprocess.run([sys.executable, str(root / 'benchmarks' / 'cpu_kernels.py'), '--quick',
                    '--out', str(out)], check=True, cwd=root, capture_output=True, timeout=300)
    rows = json.loads(out.read_text())['rows']
    assert {r['case'] for r in rows} == {
        'layer_norm', 'residual_dropout_layer_norm', 'dropout (attention weights)',
        'self_attention', 'mlm_cross_entropy', 'residual_layer_norm, inference',
        'self_attention, inference'}
    for r in rows:   # each pair timed what it says: MXNet's operators, then the kernel
        assert r['mxnet']['gluonbert_ops'] == [] and r['kernel']['gluonbert_ops'], r
