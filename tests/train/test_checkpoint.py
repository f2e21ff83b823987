"""Training checkpoints: round trip, atomic layout, keep-last-K, damaged ones skipped."""
import json
import os
import random

import mxnet as mx
import numpy as np
import pytest
from gluonbert import runs
from gluonbert.errors import CheckpointError
from gluonbert.model import BERTModel, get_config
from gluonbert.model.init import TruncNorm
from gluonbert.train import checkpoint as ckpt
from gluonbert.train.engine import Update

from .synthetic import make_batch, make_engine


def build(contexts, optimizer='bertadam', seed=0):
    mx.random.seed(seed)
    net = BERTModel(get_config('bert_tiny_test', dropout=0.1))
    net.initialize(TruncNorm(0.02), ctx=contexts)
    engine = make_engine(net, len(contexts), optimizer)
    return net, engine.trainer, engine


def run_steps(engine, batches):
    losses = []
    for batch in batches:
        engine.step(Update([batch]))
        losses.append(engine.read_interval()['mlm_loss_sum'])
    return losses


def params_of(net):
    return {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize('optimizer', ['bertadam', 'adamw', 'lamb'])
def test_save_load_continues_exactly(tmp_path, optimizer):
    contexts = [mx.cpu(0), mx.cpu(1)]
    rng = np.random.default_rng(0)
    batches = [make_batch(rng) for _ in range(6)]
    net, trainer, step = build(contexts, optimizer)
    run_steps(step, batches[:3])
    random.seed(5)
    np.random.seed(5)
    path = ckpt.save_checkpoint(str(tmp_path), net, trainer, 3, {'batch_index': 3}, 7,
                                {'note': 'test'}, history=[{'step': 3}])
    expected_py, expected_np = random.random(), np.random.random()
    straight = run_steps(step, batches[3:])          # dropout masks after the reseed
    final = params_of(net)

    net2, trainer2, step2 = build(contexts, optimizer, seed=99)   # different initial weights
    random.seed(0)
    np.random.seed(0)
    meta = ckpt.load_checkpoint(path, net2, trainer2)
    step2.done = meta['step']                                     # as the engine's train does
    assert meta['step'] == 3 and meta['data_position'] == {'batch_index': 3}
    assert meta['history'] == [{'step': 3}] and meta['config'] == {'note': 'test'}
    assert (random.random(), np.random.random()) == (expected_py, expected_np)
    assert trainer2._optimizer.num_update == trainer._optimizer.num_update - 3
    resumed = run_steps(step2, batches[3:])
    np.testing.assert_allclose(resumed, straight, rtol=1e-6)
    for name, value in params_of(net2).items():
        np.testing.assert_allclose(value, final[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_layout_keep_last_and_hidden_temporaries(tmp_path):
    net, trainer, step = build([mx.cpu()])
    run_steps(step, [make_batch(np.random.default_rng(0))])
    for s in (1, 2, 3, 4):
        ckpt.save_checkpoint(str(tmp_path), net, trainer, s, {}, 0, {}, keep=2)
    (tmp_path / '.tmp-step-00000005-123').mkdir()               # a crashed save
    assert [s for s, _ in runs.list_checkpoints(str(tmp_path))] == [3, 4]
    files = sorted(os.listdir(tmp_path / 'step-00000004'))
    assert files == ['meta.json', 'model.params', 'optimizer.params']
    assert runs.find_latest(str(tmp_path)).endswith('step-00000004')
    # model.params alone loads into a fresh model (GluonNLP names, no optimizer needed)
    fresh = BERTModel(get_config('bert_tiny_test'))
    fresh.load_parameters(str(tmp_path / 'step-00000004' / 'model.params'))


def test_truncated_newest_checkpoint_is_skipped_with_warning(tmp_path):
    net, trainer, step = build([mx.cpu()])
    run_steps(step, [make_batch(np.random.default_rng(0))])
    for s in (10, 20):
        ckpt.save_checkpoint(str(tmp_path), net, trainer, s, {}, 0, {})
    newest = tmp_path / 'step-00000020' / 'model.params'
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2])
    with pytest.warns(RuntimeWarning, match='step-00000020.*truncated'):
        found = runs.find_latest(str(tmp_path))
    assert found.endswith('step-00000010')
    with pytest.raises(CheckpointError, match='truncated'):
        ckpt.load_checkpoint(str(tmp_path / 'step-00000020'), net, trainer)
    (tmp_path / 'step-00000010' / 'meta.json').write_text('{"format": ')   # half-written
    with pytest.warns(RuntimeWarning) as caught:
        assert runs.find_latest(str(tmp_path)) is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and 'truncated' in messages[0] and 'unreadable' in messages[1]


def test_bit_flip_is_detected(tmp_path):
    net, trainer, step = build([mx.cpu()])
    run_steps(step, [make_batch(np.random.default_rng(0))])
    path = ckpt.save_checkpoint(str(tmp_path), net, trainer, 1, {}, 0, {})
    target = os.path.join(path, 'optimizer.params')
    data = bytearray(open(target, 'rb').read())
    data[-5] ^= 0xFF
    open(target, 'wb').write(bytes(data))
    with pytest.warns(RuntimeWarning, match='sha1'):
        assert runs.find_latest(str(tmp_path)) is None
    meta = json.load(open(os.path.join(path, 'meta.json')))
    assert meta['format'] == runs.CHECKPOINT_FORMAT and set(meta['files']) == {'model.params',
                                                                     'optimizer.params'}
