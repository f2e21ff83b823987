"""The distributed-kvstore launcher, with real scheduler/server/worker processes on loopback."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gluonbert.errors import DataFormatError
from gluonbert.platform import physical_cores
from gluonbert.dist.launcher import read_hosts

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

WORKER = textwrap.dedent('''
    import os, sys, time
    import mxnet as mx
    kv = mx.kv.create(sys.argv[1])
    print(f'kvstore rank {kv.rank} of {kv.num_workers}', flush=True)
    print(f'threads {os.environ.get("OMP_NUM_THREADS")}', flush=True)
    kv.init(0, mx.nd.zeros((4,)))
    steps = int(sys.argv[2])
    for step in range(steps):
        kv.push(0, mx.nd.ones((4,)) * (kv.rank + 1))
        out = mx.nd.zeros((4,))
        kv.pull(0, out=out)
        out.wait_to_read()  # the round is merged before this worker pushes the next one
        if step == 0:
            open(os.path.join(sys.argv[3], f'pid{kv.rank}'), 'w').write(str(os.getpid()))
        time.sleep(float(sys.argv[4]))
    print(f'rank {kv.rank} sum {out.asnumpy()[0]:.1f}', flush=True)
''')


def _launch(tmp_path, workers, servers, steps, sleep, timeout=90):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    cmd = [sys.executable, '-m', 'gluonbert.cli', 'launch', '-n', str(workers), '-s',
           str(servers), '--', sys.executable, str(script), 'dist_sync', str(steps),
           str(tmp_path), str(sleep)]
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize('servers', [1, 2])
def test_two_workers_aggregate_through_servers(tmp_path, servers):
    proc = _launch(tmp_path, workers=2, servers=servers, steps=3, sleep=0)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    # dist_sync sums the pushes of both workers: 1 + 2.
    assert out.count('sum 3.0') == 2, out
    assert '[worker 0]' in out and '[worker 1]' in out
    assert 'kvstore rank 0 of 2' in out and 'kvstore rank 1 of 2' in out
    # the two workers share this host's cores (perf.default_threads)
    assert out.count(f'threads {max(1, physical_cores() // 2)}') == 2, out


def test_a_killed_worker_stops_the_job_fast_and_leaves_nothing(tmp_path):
    proc = _launch(tmp_path, workers=2, servers=1, steps=10_000, sleep=0.05)
    pid_file = tmp_path / 'pid1'
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid_file.exists(), 'workers never started'
    time.sleep(0.2)
    victim = int(pid_file.read_text())
    other = int((tmp_path / 'pid0').read_text())
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    elapsed = time.monotonic() - killed_at
    assert proc.returncode != 0
    assert elapsed < 30
    assert 'kvstore rank 1' in out and 'SIGKILL' in out and 'stopped the other 3' in out, out
    time.sleep(0.5)
    assert not _alive(other), 'the surviving worker was left running'
    leftovers = subprocess.run(['pgrep', '-f', str(tmp_path / 'worker.py')],
                               capture_output=True, text=True).stdout.split()
    assert not leftovers


def test_hosts_file_errors_name_the_line(tmp_path):
    hosts = tmp_path / 'hosts'
    hosts.write_text('# cluster\nnode1\nnode2:2222\n')
    assert read_hosts(str(hosts)) == ['node1', 'node2:2222']
    hosts.write_text('node1\nbad host!\n')
    with pytest.raises(DataFormatError, match=r'hosts:2: .*bad host!'):
        read_hosts(str(hosts))


def test_missing_command_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'gluonbert.cli', 'launch', '-n', '1', '--',
                           str(tmp_path / 'no-such-program')], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert 'cannot start worker 0' in proc.stderr and 'Traceback' not in proc.stderr
