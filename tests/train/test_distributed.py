"""Multi-process pretraining on MXNet's dist_sync kvstore, real processes on 127.0.0.1.

* N workers with batch B end with identical parameters, equal to one process training on
  the concatenation of their batches (batch N x B) on two devices.
* A worker killed with SIGKILL stops the job within 30 s; ``--resume`` finishes it, and the
  parameters equal an uninterrupted run's.
"""
import os
import pathlib
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from gluonbert.train.config import DeviceConfig, PretrainConfig
from gluonbert.train.engine import Engine, Update
from gluonbert.train.pretrain import (PretrainingLoss, build_pretraining_model,
                                      load_pretraining_data, pretraining_config)

from .synthetic import write_random_shards

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

STEPS, BATCH = 4, 8


def _pretrain_args(shards, out, steps, extra=()):
    return [sys.executable, '-m', 'gluonbert.cli', 'pretrain', '--data', shards, '--model', 'bert_tiny_test',
            '--cpus', '1', '--kvstore', 'dist_sync', '--num-steps', str(steps),
            '--batch-size', str(BATCH), '--out-dir', out, '--no-progress',
            '--save-all-ranks', *extra]


def _launch(workers, servers, args):
    cmd = [sys.executable, '-m', 'gluonbert.cli', 'launch', '-n', str(workers), '-s',
           str(servers), '--', *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def _forever(stream):
    """Epoch after epoch, as the pretraining task reads its stream."""
    while True:
        yield from stream


def _single_process_reference(shards, steps, workers, run_steps=None):
    """One process, two devices, each step on the concatenation of every rank's batch."""
    config = PretrainConfig(data=shards, model='bert_tiny_test', batch_size=BATCH,
                            num_steps=steps, dropout=0.0, devices=DeviceConfig(cpus=2))
    engine = Engine(config)                                   # seeds as train() does
    bert_config = pretraining_config(config)
    streams = [load_pretraining_data(config, bert_config, rank, workers)[0]
               for rank in range(workers)]
    net = build_pretraining_model(bert_config, engine.contexts)
    engine.attach(net, PretrainingLoss(), steps)
    iterators = [_forever(s) for s in streams]
    for _ in range(steps if run_steps is None else run_steps):
        parts = [next(it) for it in iterators]
        engine.step(Update([type(parts[0])(*[np.concatenate(arrays) for arrays in zip(*parts)])]))
    return {k: v.data(engine.contexts[0]).asnumpy()
            for k, v in net._collect_params_with_prefix().items()}


@pytest.fixture
def shards(tmp_path):
    return write_random_shards(tmp_path / 'shards', num_shards=4, per_shard=24, seed=3)


def _two_worker_run(tmp_path, shards, servers):
    out = str(tmp_path / 'run')
    proc = _launch(2, servers, _pretrain_args(shards, out, STEPS, ['--dropout', '0']))
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log
    rank0, rank1 = _params(pathlib.Path(out, 'model.params')), \
        _params(pathlib.Path(out, 'model.rank1.params'))
    assert rank0.keys() == rank1.keys()
    return rank0, rank1


@pytest.mark.parametrize('servers', [1, 2])
def test_workers_agree_and_train(tmp_path, shards, servers):
    """Both ``dist_sync`` workers end bit for bit equal. Before ``Cluster.sync_weights`` about
    1 run in 6 failed: a worker's lazy broadcast pull of the initial weights could be answered
    with the first summed gradient (the servers keep it under the same key), so that worker
    trained a gradient as its weights (the NSP head, the last keys, most often)."""
    rank0, rank1 = _two_worker_run(tmp_path, shards, servers)
    for name in rank0:
        assert np.array_equal(rank0[name], rank1[name]), name
    # training did move the parameters (the comparison is not of two initialisations)
    initial = _single_process_reference(shards, STEPS, workers=2, run_steps=0)
    moved = sum(not np.allclose(initial[n], rank0[n]) for n in rank0)
    assert moved > len(rank0) // 2


@pytest.mark.parametrize('servers', [1, 2])
def test_workers_equal_one_process_with_the_global_batch(tmp_path, shards, servers):
    """A 2-worker ``dist_sync`` run equals one process training on the concatenation of both
    workers' batches (rtol 1e-5)."""
    rank0, _ = _two_worker_run(tmp_path, shards, servers)
    reference = _single_process_reference(shards, STEPS, workers=2)
    for name, value in reference.items():
        np.testing.assert_allclose(rank0[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_killed_worker_fails_fast_then_resume_matches_uninterrupted(tmp_path, shards):
    """SIGKILL to a worker ends the job within 30 s; ``--resume`` then ends bit for bit where
    an uninterrupted run ends (this also varied before ``Cluster.sync_weights``)."""
    steps = 120
    # Dropout off: CPU dropout masks under OpenMP are not bit-reproducible across processes on
    # a loaded machine; resume with dropout on is checked in one process (test_checkpoint.py).
    extra = ['--checkpoint-interval', '10', '--log-interval', '50', '--dropout', '0']
    straight = str(tmp_path / 'straight')
    proc = _launch(2, 1, _pretrain_args(shards, straight, steps, extra))
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log

    out = str(tmp_path / 'killed')
    proc = _launch(2, 1, _pretrain_args(shards, out, steps, extra))
    checkpoints = pathlib.Path(out, 'checkpoints')
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(checkpoints.glob('step-*')):
        time.sleep(0.02)
    workers = subprocess.run(['pgrep', '-f', f'out-dir {out}'], capture_output=True,
                             text=True).stdout.split()
    workers = [int(p) for p in workers if int(p) != proc.pid]
    assert workers, 'no worker process found'
    os.kill(max(workers), signal.SIGKILL)
    killed_at = time.monotonic()
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert time.monotonic() - killed_at < 30
    assert 'SIGKILL' in log and 'kvstore rank' in log, log
    assert not os.path.exists(os.path.join(out, 'model.params')), 'the run was not interrupted'
    leftovers = subprocess.run(['pgrep', '-f', f'out-dir {out}'], capture_output=True,
                               text=True).stdout.split()
    assert not leftovers

    proc = _launch(2, 1, _pretrain_args(shards, out, steps, extra + ['--resume']))
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert 'resumed from' in log
    expected = _params(pathlib.Path(straight, 'model.params'))
    for path in ('model.params', 'model.rank1.params'):
        got = _params(pathlib.Path(out, path))
        for name in expected:
            assert np.array_equal(got[name], expected[name]), (path, name)
