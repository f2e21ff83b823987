"""gluonbert.platform and the engine's make_trainer: BERTAdamW is BERT's Adam (also in float16 with a master
copy) and excludes biases and LayerNorm from weight decay; the environment helper prints shell
exports."""
import json
import os
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluonbert import platform as perf
from gluonbert.model.optimize import _mkldnn_enabled, optimize
from gluonbert.model import BERTClassifier, BERTModel, get_config
from gluonbert.train.optim import BERTAdamW


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
    optimize(net)
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


def test_physical_cores_counts_each_core_once(tmp_path):
    """Hyper-threads (same physical id and core id) count once; CPUs outside the affinity
    mask do not count; without the file, the CPUs of the mask."""
    allowed = sorted(os.sched_getaffinity(0))
    blocks = []
    for i, cpu in enumerate(allowed + [max(allowed) + 1]):          # + one CPU not allowed
        blocks.append(f'processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {i // 2}\n')
    path = tmp_path / 'cpuinfo'
    path.write_text('\n'.join(blocks))
    assert perf.physical_cores(str(path)) == (len(allowed) + 1) // 2
    assert perf.physical_cores(str(tmp_path / 'missing')) == len(allowed)


def test_default_threads_sets_only_what_is_unset():
    env = {}
    cores = perf.physical_cores()
    assert perf.default_threads(env) == str(cores) == env['OMP_NUM_THREADS']
    env = {}
    assert perf.default_threads(env, workers=4) == str(max(1, cores // 4))
    env = {'OMP_NUM_THREADS': '7'}
    assert perf.default_threads(env) == '7'


def test_gluonbert_command_sets_threads_before_mxnet_loads(tmp_path):
    """Without OMP_NUM_THREADS, MXNet 1.9 would use half the CPUs (one thread on 2 vCPUs); the
    command sets it before MXNet is imported (seen by an import hook), unless the user did."""
    code = textwrap.dedent(f'''
        import os, sys
        seen = []
        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == 'mxnet':
                    seen.append(os.environ.get('OMP_NUM_THREADS'))
                return None
        sys.meta_path.insert(0, Watch())
        from gluonbert import cli
        code = cli.main(['predict', '--model-dir', {str(tmp_path / 'missing')!r},
                         '--input', 'in.tsv', '--output', 'out.tsv'])
        print(code, seen[0])
    ''')
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    for extra, expected in (({}, str(perf.physical_cores())), ({'OMP_NUM_THREADS': '3'}, '3')):
        out = subprocess.run([sys.executable, '-c', code], env=dict(env, **extra),
                             capture_output=True, text=True, check=True, cwd=tmp_path)
        assert out.stdout.split() == ['2', expected], out.stderr


def test_recommended_env_and_shell_exports():
    env = perf.recommended_env(3)
    assert env['OMP_NUM_THREADS'] == '3' and 'MALLOC_ARENA_MAX' not in env
    assert perf.recommended_env(3, allocator=True)['MALLOC_ARENA_MAX'] == '1'
    out = subprocess.run([sys.executable, '-m', 'gluonbert.platform', '--threads', '2'],
                         capture_output=True, text=True, check=True).stdout
    assert 'export OMP_NUM_THREADS=2' in out.splitlines()
    assert 'export MALLOC_MMAP_MAX_=0' in out.splitlines()


@pytest.mark.parametrize('kernels', [True, False])
def test_optimize_for_inference_keeps_outputs(kernels):
    from gluonbert import kernels as cpu_kernels
    if kernels and not cpu_kernels.available():
        pytest.skip('no C++ compiler: the kernels cannot be built here')
    config = get_config('bert_tiny_test', dropout=0.0)
    rng = np.random.RandomState(4)
    ids = mx.nd.array(rng.randint(1, 100, (3, 12)), dtype='int32')
    seg = mx.nd.array(rng.randint(0, 2, (3, 12)), dtype='int32')
    length = mx.nd.array([12, 7, 1], dtype='int32')
    net = BERTModel(config, use_decoder=False, use_classifier=False)
    net.initialize(mx.init.Normal(0.05))
    expected = [o.asnumpy() for o in net(ids, seg, length)]
    optimize(net, ids, seg, length, training=False, kernels=kernels)
    for _ in range(2):   # the rewritten graph, then its cached run
        got = [o.asnumpy() for o in net(ids, seg, length)]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    ops = {node['op'] for node in json.loads(net._cached_graph[1].tojson())['nodes']}
    if kernels:
        assert {'gluonbert_self_attention_inference', 'gluonbert_add_dropout_layer_norm'} <= ops
    elif _mkldnn_enabled():
        assert '_sg_mkldnn_selfatt_qk' in ops and '_sg_mkldnn_fully_connected' in ops, ops


@pytest.mark.parametrize('choice', ['auto', True, False])
def test_optimize_kernel_choice(choice):
    from gluonbert import kernels as cpu_kernels
    from gluonbert.model.attention import SelfAttention
    from gluonbert.model.dropout import Dropout
    from gluonbert.model.layer_norm import LayerNorm
    if choice is not False and not cpu_kernels.available():
        pytest.skip('no C++ compiler: the kernels cannot be built here')
    net = BERTModel(get_config('bert_tiny_test'), use_decoder=False, use_classifier=False)
    net.initialize()
    optimize(net, training=True, kernels=choice)
    blocks = []
    kinds = (LayerNorm, Dropout, SelfAttention)
    net.apply(lambda b: blocks.append(b) if isinstance(b, kinds) else None)
    assert len(blocks) == 4 * 2 + 2   # per cell: attention, its dropout, 2 LayerNorms; embeddings: 2
    assert all(b.kernel is bool(choice) for b in blocks)
    attention = [b for b in blocks if isinstance(b, SelfAttention)]
    assert not any(b.inference for b in attention)
    optimize(net, training=False, kernels=choice)   # the forward-only attention kernel
    assert all(b.kernel is bool(choice) for b in blocks)
    assert all(b.inference for b in attention)
    with pytest.raises(ValueError, match='kernels'):
        optimize(net, kernels='yes')


def test_optimize_without_kernels(monkeypatch):
    from gluonbert import kernels as cpu_kernels
    monkeypatch.setitem(cpu_kernels._state, 'loaded', None)
    monkeypatch.setenv('GLUONBERT_KERNELS', '0')
    net = BERTModel(get_config('bert_tiny_test'), use_decoder=False, use_classifier=False)
    net.initialize()
    optimize(net, training=True)                # 'auto': falls back to MXNet's operators
    assert not net.encoder.layer_norm.kernel
    with pytest.raises(RuntimeError, match='not available'):
        optimize(net, training=True, kernels=True)
