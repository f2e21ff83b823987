"""What ``gluonbert launch`` refuses before it starts anything (issue 26): a training command
without a distributed kvstore (N independent runs into one --out-dir), a worker of a kvstore
job that would train on its own, a scheduler port another program listens on."""
import os
import socket
import subprocess
import sys

import pytest

from gluonbert.dist.launcher import check_worker_command
from gluonbert.errors import ConfigError
from gluonbert.train.config import DeviceConfig, PretrainConfig
from gluonbert.train.pretrain import pretrain

CLI = [sys.executable, '-m', 'gluonbert.cli']


def _run(args, env=None):
    return subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_launch_refuses_a_training_command_without_a_distributed_kvstore(tmp_path, shards_dir):
    out = tmp_path / 'run'
    proc = _run(CLI + ['launch', '-n', '2', '--'] + CLI + [
        'pretrain', '--data', shards_dir, '--model', 'bert_tiny_test', '--batch-size', '8',
        '--num-steps', '1', '--out-dir', str(out), '--no-progress'])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'no --kvstore (device: one process); expected --kvstore dist_sync' in proc.stderr
    assert 'Traceback' not in proc.stderr and 'started' not in proc.stdout
    assert not out.exists()


@pytest.mark.parametrize('command, refused', [
    (['gluonbert', 'pretrain', '--kvstore', 'device'], '--kvstore device'),
    (['gluonbert', 'finetune', '--kvstore=local'], '--kvstore local'),
    (['python', '-m', 'gluonbert.cli', 'pretrain', '--kv', 'device'], '--kvstore device'),
    (['gluonbert', 'pretrain', '--kvstore', 'dist_sync', '--comm-backend', 'horovod'],
     'horovodrun'),
    (['gluonbert', 'pretrain', '--kvstore', 'dist_sync'], None),
    (['gluonbert', 'finetune', '--kvstore=dist_sync_device'], None),
    (['python', 'my_script.py', 'pretrain'], None),         # not gluonbert's: its own business
    (['gluonbert', 'evaluate-pretraining', '--data', 'x'], None),
])
def test_which_worker_commands_are_refused(command, refused):
    if refused is None:
        check_worker_command(command)
    else:
        with pytest.raises(ConfigError, match=refused):
            check_worker_command(command)


def test_a_worker_of_a_job_refuses_a_local_kvstore(tmp_path, shards_dir, monkeypatch):
    """A gluonbert training process started as a worker of a kvstore job (by another
    launcher, or DMLC_* by hand) with a local kvstore refuses before it writes anything."""
    monkeypatch.setenv('DMLC_ROLE', 'worker')
    monkeypatch.setenv('DMLC_NUM_WORKER', '2')
    out = tmp_path / 'run'
    with pytest.raises(ConfigError, match=r'--kvstore device: this process is a worker of a '
                                          r'kvstore job .*DMLC_NUM_WORKER=2'):
        pretrain(PretrainConfig(data=shards_dir, out_dir=str(out), model='bert_tiny_test',
                                progress=False, devices=DeviceConfig(kvstore='device')))
    assert not out.exists()


def test_a_scheduler_port_in_use_is_named(tmp_path):
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _run(CLI + ['launch', '-n', '1', '--port', str(port), '--', 'true'])
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f'--port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)' \
            in proc.stderr, proc.stderr
        # a scheduler started by hand on that port says the same instead of ps-lite's abort
        env = {'DMLC_PS_ROOT_URI': '127.0.0.1', 'DMLC_PS_ROOT_PORT': str(port),
               'DMLC_NUM_WORKER': '1', 'DMLC_NUM_SERVER': '1'}
        proc = _run(CLI + ['launch', '--role', 'scheduler'], env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f'DMLC_PS_ROOT_PORT={port}: the scheduler cannot listen on port {port}' \
            in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr
