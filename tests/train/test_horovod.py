"""``--comm-backend horovod``: real ``horovodrun --gloo -np 2`` jobs on this host.

* pretraining: both ranks end bit for bit equal, and bit for bit equal to one process
  training on the concatenation of both ranks' batches on two devices, reduced by MXNet's
  ``device`` kvstore (the reference of ``test_distributed.py``);
* fine-tuning: both ranks equal one process taking both ranks' batches of every update as
  ``--accumulate 2`` micro-batches, within rtol 1e-5 / atol 1e-6 (measured: max abs difference
  1.2e-7; accumulation adds each gradient into the buffer inside the backward pass, the
  allreduce adds two finished gradients, so the roundings differ);
* SIGKILL of one worker: horovodrun stops the other and exits non-zero (Horovod's own
  behaviour), and ``--resume`` then ends bit for bit where the uninterrupted run ended;
* ``import gluonbert`` and the kvstore back-end never import ``horovod``.

Horovod must be built against the installed MXNet (``scripts/setup.sh`` with
``GLUONBERT_HOROVOD=1``, which ``scripts/test.sh`` sets); the tests skip without it, and fail
instead when ``GLUONBERT_REQUIRE_HOROVOD=1`` (set by ``scripts/test.sh``, so CI cannot skip
them). One uninterrupted pretraining run serves the equality and the resume test.
"""
import glob
import importlib.util
import os
import pathlib
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import psutil
import pytest

from gluonbert.dist.cluster import horovod_device, make_cluster
from gluonbert.errors import ConfigError
from gluonbert.train.config import DeviceConfig, FinetuneConfig, OptimizerConfig
from gluonbert.train.finetune import finetune

from .synthetic import write_converted, write_paraphrase_tsv, write_random_shards
from .test_distributed import BATCH, _params

#: Real processes (horovodrun): CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

STEPS, INTERVAL = 20, 4          # pretraining updates, checkpoint interval
HOROVODRUN = pathlib.Path(sys.executable).with_name('horovodrun')
#: OpenMP threads of every process compared bit for bit: MXNet's reductions (the embeddings'
#: gradients) split their sums by thread, so another thread count rounds differently.
THREADS = '1'
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _horovod_missing():
    """Why Horovod cannot run here (None when it can); never imports ``horovod.mxnet``."""
    spec = importlib.util.find_spec('horovod')
    if spec is None:
        return 'horovod is not installed'
    libs = [p for d in spec.submodule_search_locations
            for p in glob.glob(os.path.join(d, 'mxnet', 'mpi_lib*.so'))]
    if not libs:
        return 'horovod was built without MXNet support'
    if not HOROVODRUN.exists():
        return f'{HOROVODRUN} not found'
    return None


@pytest.fixture(scope='module')
def horovod():
    """Skips the test without Horovod, or fails it under GLUONBERT_REQUIRE_HOROVOD=1."""
    missing = _horovod_missing()
    if missing and os.environ.get('GLUONBERT_REQUIRE_HOROVOD') == '1':
        pytest.fail(f'GLUONBERT_REQUIRE_HOROVOD=1 but {missing} (scripts/setup.sh with '
                    'GLUONBERT_HOROVOD=1 builds it)')
    if missing:
        pytest.skip(f'{missing}; build it with GLUONBERT_HOROVOD=1 bash scripts/setup.sh')


def _horovodrun(command, out_dir):
    """Starts ``horovodrun --gloo -np 2`` of a gluonbert command; output to out_dir + '.log'."""
    log = open(out_dir + '.log', 'w')
    cmd = [str(HOROVODRUN), '--gloo', '-np', '2', '-H', 'localhost:2',
           sys.executable, '-m', 'gluonbert.cli', *command, '--out-dir', out_dir,
           '--comm-backend', 'horovod', '--cpus', '1', '--no-progress', '--save-all-ranks']
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, 'OMP_NUM_THREADS': THREADS})
    proc.log_path = out_dir + '.log'
    log.close()
    return proc


def _finish(proc, timeout):
    """Waits for ``proc``; on a timeout kills it and every process under it."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        raise
    return pathlib.Path(proc.log_path).read_text()


def _kill_tree(pid):
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _job_processes(out_dir):
    """Every process whose command line names ``out_dir`` (horovodrun, shells, workers)."""
    found = []
    for p in psutil.process_iter(['pid', 'cmdline']):
        if out_dir in ' '.join(p.info['cmdline'] or ()):
            found.append(p)
    return found


def _worker(out_dir, rank):
    """The Python worker process of Horovod rank ``rank``."""
    for p in _job_processes(out_dir):
        try:
            cmdline = p.cmdline()
            if cmdline[:3] == [sys.executable, '-m', 'gluonbert.cli'] and \
                    p.environ().get('HOROVOD_RANK') == str(rank):
                return p
        except psutil.NoSuchProcess:
            continue
    return None


def _pretrain_command(shards, extra=()):
    return ['pretrain', '--data', shards, '--model', 'bert_tiny_test', '--num-steps', str(STEPS),
            '--batch-size', str(BATCH), '--dropout', '0', '--checkpoint-interval', str(INTERVAL),
            '--log-interval', '5', *extra]


def _reference(shards, tmp, run_steps=None):
    """``test_distributed``'s one-process reference (both ranks' batches on two devices),
    computed in a process of its own with the ranks' OpenMP thread count."""
    out = tmp / f'reference-{run_steps}.npz'
    code = ('import sys, numpy as np\n'
            'from tests.train.test_distributed import _single_process_reference\n'
            'run = None if sys.argv[3] == "None" else int(sys.argv[3])\n'
            'np.savez(sys.argv[2], **_single_process_reference(sys.argv[1], int(sys.argv[4]), '
            'workers=2, run_steps=run))\n')
    done = subprocess.run([sys.executable, '-c', code, shards, str(out), str(run_steps),
                           str(STEPS)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'OMP_NUM_THREADS': THREADS})
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.fixture(scope='module')
def pretraining(horovod, tmp_path_factory):
    """The shards and one uninterrupted 2-process Horovod pretraining run."""
    tmp = tmp_path_factory.mktemp('horovod_pretrain')
    shards = write_random_shards(tmp / 'shards', num_shards=4, per_shard=24, seed=3)
    out = str(tmp / 'straight')
    proc = _horovodrun(_pretrain_command(shards), out)
    log = _finish(proc, timeout=300)
    assert proc.returncode == 0, log
    return {'shards': shards, 'tmp': tmp, 'out': out, 'log': log}


def test_pretraining_ranks_agree_and_equal_one_process_with_the_global_batch(pretraining):
    out = pretraining['out']
    rank0 = _params(pathlib.Path(out, 'model.params'))
    rank1 = _params(pathlib.Path(out, 'model.rank1.params'))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert np.array_equal(rank0[name], rank1[name]), name
    assert '(rank 0 of 2)' in pretraining['log']
    assert '(rank 1 of 2)' in pathlib.Path(out, 'train.rank1.log').read_text()
    reference = _reference(pretraining['shards'], pretraining['tmp'])
    assert reference.keys() == rank0.keys()
    for name, value in reference.items():
        assert np.array_equal(rank0[name], value), name
    # the comparison is of trained parameters, not of two initialisations
    initial = _reference(pretraining['shards'], pretraining['tmp'], run_steps=0)
    moved = sum(not np.allclose(initial[n], rank0[n], rtol=1e-4, atol=1e-5) for n in rank0)
    assert moved > len(rank0) // 2


def test_killed_worker_ends_the_job_then_resume_matches_uninterrupted(pretraining):
    """SIGKILL to rank 1: horovodrun terminates rank 0 (SIGTERM, then SIGKILL after its 5 s
    grace) and exits 1, leaving no process; the same command with ``--resume`` then ends with
    the parameters of the uninterrupted run, bit for bit, on both ranks."""
    out = str(pretraining['tmp'] / 'killed')
    command = _pretrain_command(pretraining['shards'])
    proc = _horovodrun(command, out)
    try:
        deadline = time.monotonic() + 240
        checkpoints = pathlib.Path(out, 'checkpoints')
        while time.monotonic() < deadline and not list(checkpoints.glob('step-*')):
            assert proc.poll() is None, pathlib.Path(proc.log_path).read_text()
            time.sleep(0.02)
        victim = _worker(out, 1)
        assert victim is not None, 'rank 1 not found'
        victim.kill()
        killed_at = time.monotonic()
        log = _finish(proc, timeout=60)
    finally:
        _kill_tree(proc.pid)
    assert time.monotonic() - killed_at < 30
    assert proc.returncode != 0, log
    assert 'Process 1 exit with status code 137' in log, log
    assert 'Terminating remaining workers after failure of Process 1' in log, log
    assert not os.path.exists(os.path.join(out, 'model.params')), 'the run was not interrupted'
    assert not _job_processes(out), 'processes outlived horovodrun'

    proc = _horovodrun(command + ['--resume'], out)
    log = _finish(proc, timeout=300)
    assert proc.returncode == 0, log
    assert 'resumed from' in log
    expected = _params(pathlib.Path(pretraining['out'], 'model.params'))
    for path in ('model.params', 'model.rank1.params'):
        got = _params(pathlib.Path(out, path))
        for name in expected:
            assert np.array_equal(got[name], expected[name]), (path, name)


def test_finetuning_equals_one_process_accumulating_both_ranks_batches(horovod, tmp_path):
    data = tmp_path / 'paraphrase'
    data.mkdir()
    write_paraphrase_tsv(data / 'train.tsv', 160, seed=1)
    write_paraphrase_tsv(data / 'dev.tsv', 48, seed=2)
    converted = write_converted(tmp_path / 'converted')
    common = dict(max_seq_length=32, batch_size=16, eval_batch_size=32, epochs=1, dropout=0.0)
    out = str(tmp_path / 'hvd')
    proc = _horovodrun(['finetune', '--data-dir', str(data), '--from-converted', converted,
                        '--lr', '1e-3', '--warmup-ratio', '0.1',
                        *[a for k, v in common.items()
                          for a in (f'--{k.replace("_", "-")}', str(v))]], out)
    log = _finish(proc, timeout=300)
    assert proc.returncode == 0, log
    reference = finetune(FinetuneConfig(
        data_dir=str(data), from_converted=converted, out_dir=str(tmp_path / 'one'),
        progress=False, devices=DeviceConfig(cpus=1),
        optimizer=OptimizerConfig(name='adamw', lr=1e-3, warmup_ratio=0.1, accumulate=2),
        **common))                                  # adamw: the command's fine-tuning default
    expected = _params(pathlib.Path(tmp_path / 'one' / 'model.params'))
    for path in ('model.params', 'model.rank1.params'):
        got = _params(pathlib.Path(out, path))
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6,
                                       err_msg=f'{path} {name}')
    assert '(rank 0 of 2)' in log
    assert '(rank 1 of 2)' in pathlib.Path(out, 'train.rank1.log').read_text()
    assert reference['epochs'][0]['train_count'] == 160
    # training moved the encoder away from its starting point (not two initialisations)
    start = _params(pathlib.Path(converted, 'model.params'))
    pairs = [(got['bert.' + k], v) for k, v in start.items() if 'bert.' + k in got]
    assert len(pairs) == len(start)
    assert sum(not np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in pairs) > len(pairs) // 2


def test_plain_use_never_imports_horovod():
    """gluonbert's modules and the kvstore back-end leave ``horovod`` unimported (its MXNet
    extension is loaded with RTLD_GLOBAL; nothing but ``--comm-backend horovod`` may load it)."""
    script = (
        'import sys\n'
        'import mxnet as mx\n'
        'import gluonbert, gluonbert.cli, gluonbert.train.engine, gluonbert.train.pretrain\n'
        'import gluonbert.train.finetune, gluonbert.serve.predict, gluonbert.dist.launcher\n'
        'from gluonbert.dist.cluster import make_cluster\n'
        'cluster = make_cluster([mx.cpu(0), mx.cpu(1)], "device")\n'
        'assert cluster.hvd is None and cluster.kvstore is not None\n'
        'print(sorted(m for m in sys.modules if m.split(".")[0] == "horovod"))\n')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '[]'


def test_each_process_of_a_host_takes_its_local_ranks_gpu():
    """``--gpus 0,1,2,3`` on every process of ``-H host:4``: local rank r trains on GPU r (the
    contexts are only named here; no GPU is needed)."""
    gpus = [mx.gpu(i) for i in range(4)]
    assert [horovod_device(gpus, r, 4) for r in range(4)] == gpus
    assert horovod_device([mx.gpu(3)], 0, 1) == mx.gpu(3)
    assert horovod_device([mx.cpu()], 1, 2) == mx.cpu()        # CPU processes share the host
    with pytest.raises(ConfigError, match=r'--gpus 0,1 .* 4 processes on this host; expected '
                                          r'one GPU id per process'):
        horovod_device(gpus[:2], 0, 4)
    with pytest.raises(ConfigError, match='expected one GPU id per process'):
        horovod_device([mx.gpu(0)], 1, 2)                        # two processes on one GPU
    with pytest.raises(ConfigError, match='2 CPU contexts given'):
        make_cluster([mx.cpu(0), mx.cpu(1)], comm_backend='horovod')
