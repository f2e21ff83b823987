"""Every failure of a multi-process kvstore job ends the whole job, with real processes on
127.0.0.1 (issue 16): a worker that raises, a scheduler or server that dies, SIGINT/SIGTERM or
SIGKILL to the launcher, ssh-started processes, and hand-started processes whose peer never
arrives. Each test checks that no process of the job is left: every PID the launcher reports,
and every process on the machine whose environment carries the test's own marker (which
catches the processes those started too)."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from .synthetic import write_corpus, write_random_shards, write_vocab
from .test_launcher import WORKER

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

CLI = [sys.executable, '-m', 'gluonbert.cli']


class Job:
    """A ``gluonbert launch`` (or any command) run in its own session, its output read by a
    thread with the time each line arrived, and a marker in its environment."""

    def __init__(self, args, env=None, cwd=None):
        self.marker = uuid.uuid4().hex
        env = {**os.environ, **(env or {}), 'GLUONBERT_TEST_JOB': self.marker}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=cwd, start_new_session=True)
        self.lines = []                       # (monotonic time, line)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip('\n')))

    @property
    def output(self):
        return '\n'.join(line for _, line in self.lines)

    def wait_for(self, pattern, timeout=90):
        """The arrival time of the first line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if re.search(pattern, line):
                    return at
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f'no line matching {pattern!r}:\n{self.output}')

    def finish(self, timeout):
        """Waits for the exit; returns (exit code, the time it exited)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f'still running after {timeout} s:\n{self.output}') from None
        ended = time.monotonic()
        self._reader.join(timeout=10)
        return code, ended

    def pids(self):
        """Processes alive whose environment carries this job's marker (not zombies)."""
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/environ', 'rb') as f:
                    if f'GLUONBERT_TEST_JOB={self.marker}'.encode() not in f.read():
                        continue
                with open(f'/proc/{entry}/stat') as f:
                    if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                        continue
            except OSError:
                continue
            found.append(int(entry))
        return found

    def started_pids(self):
        line = next(line for _, line in self.lines if 'gluonbert launch: started' in line)
        return [int(p) for p in re.findall(r'pid (\d+)', line)]

    def process(self, *words):
        """The PID of the one job process whose command line has all ``words``, not a guard."""
        for pid in self.pids():
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    argv = f.read().decode().split('\0')
            except OSError:
                continue
            if argv[1:2] != ['-c'] and all(w in argv for w in words):
                return pid
        raise AssertionError(f'no process with {words}:\n{self.output}')

    def assert_nothing_left(self, started=True, timeout=10):
        pids = self.started_pids() if started else []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = [p for p in pids if _alive(p)] + self.pids()
            if not left:
                return
            time.sleep(0.1)
        raise AssertionError(f'processes left: {left}\n{self.output}')

    def cleanup(self):
        for pid in [self.proc.pid] + self.pids():
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.fixture
def jobs():
    started = []

    def start(*args, **kwargs):
        job = Job(*args, **kwargs)
        started.append(job)
        return job
    yield start
    for job in started:
        job.cleanup()


def _worker_script(tmp_path, steps, sleep):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    return [sys.executable, str(script), 'dist_sync', str(steps), str(tmp_path), str(sleep)]


def _pretrain(data, out, steps, *extra):
    return CLI + ['pretrain', '--data', str(data), '--model', 'bert_tiny_test', '--cpus', '1',
                  '--kvstore', 'dist_sync', '--num-steps', str(steps), '--batch-size', '8',
                  '--out-dir', str(out), '--no-progress', '--dropout', '0', *extra]


def test_a_worker_error_ends_the_job(tmp_path, jobs):
    """The issue's first reproduction: raw text with two workers. Rank 1 finds no prepared
    shards and raises a GluonBERTError after the kvstore exists."""
    # Enough text that rank 0 is still preparing the shards when rank 1 looks for them.
    text = write_corpus(tmp_path / 'corpus.txt', num_docs=3000)
    vocab = write_vocab(tmp_path / 'vocab.txt')
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--grace', '20', '--'] +
               _pretrain(text, tmp_path / 'run', 30, '--vocab', vocab, '--max-seq-length', '32'))
    failed_at = job.wait_for(r'\[worker \d\] gluonbert pretrain: error: .*not found; with '
                             r'several workers')
    code, ended = job.finish(timeout=40)
    print(f'job ended {ended - failed_at:.1f} s after the error line')
    assert code == 1, job.output
    assert ended - failed_at < 30
    summary = job.output.splitlines()[-1]
    assert re.search(r'gluonbert launch: worker \d \(kvstore rank 1\), pid \d+, exited with '
                     r'code 2: gluonbert pretrain: error: .*pretraining_data.json: not found',
                     summary), job.output
    # Rank 0, blocked in the kvstore, ended on SIGTERM: no SIGKILL after the 20 s grace.
    seconds = float(re.search(r'stopped the other 3 processes in ([\d.]+) s', summary).group(1))
    assert seconds < 15, summary
    assert 'gluonbert: stopped by SIGTERM' in job.output
    job.assert_nothing_left()


def test_sigterm_to_the_launcher_stops_a_training_job(tmp_path, jobs):
    """The issue's second reproduction: SIGTERM to the launcher of a running pretraining."""
    shards = write_random_shards(tmp_path / 'shards', num_shards=4, per_shard=24, seed=3)
    out = tmp_path / 'run'
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--'] +
               _pretrain(shards, out, 100_000, '--checkpoint-interval', '5'))
    deadline = time.monotonic() + 90
    while not list((out / 'checkpoints').glob('step-*')) and time.monotonic() < deadline:
        assert job.proc.poll() is None, job.output
        time.sleep(0.05)
    assert list((out / 'checkpoints').glob('step-*')), f'training never started:\n{job.output}'
    sent = time.monotonic()
    job.proc.send_signal(signal.SIGTERM)
    code, ended = job.finish(timeout=30)
    print(f'job ended {ended - sent:.1f} s after SIGTERM')
    assert code == 143, job.output
    assert ended - sent < 15            # the grace period is 5 s
    assert 'gluonbert launch: SIGTERM received; stopped all 4 processes' in job.output
    job.assert_nothing_left()
    # Nothing writes into the output directory any more.
    before = sorted(p.name for p in (out / 'checkpoints').iterdir())
    time.sleep(1)
    assert sorted(p.name for p in (out / 'checkpoints').iterdir()) == before


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGHUP], ids=['SIGINT', 'SIGHUP'])
def test_sigint_or_sighup_to_the_launcher_stops_every_process(tmp_path, jobs, sig):
    """Plain-script workers (no gluonbert handler): SIGINT reaches them as KeyboardInterrupt,
    after which they wait in the kvstore barrier until the grace period (2 s) ends."""
    job = jobs(CLI + ['launch', '-n', '2', '-s', '2', '--grace', '2', '--'] +
               _worker_script(tmp_path, 100_000, 0.05))
    job.wait_for(r'kvstore rank 1 of 2')
    sent = time.monotonic()
    job.proc.send_signal(sig)
    code, ended = job.finish(timeout=30)
    print(f'job ended {ended - sent:.1f} s after {sig.name}')
    assert code == 128 + sig, job.output
    assert ended - sent < 15
    assert f'{sig.name} received; stopped all 5 processes' in job.output
    job.assert_nothing_left()


@pytest.mark.parametrize('role', ['scheduler', 'server'])
def test_a_killed_scheduler_or_server_ends_the_job(tmp_path, jobs, role):
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--'] +
               _worker_script(tmp_path, 100_000, 0.05))
    job.wait_for(r'kvstore rank 1 of 2')
    victim = job.process('--role', role)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    code, ended = job.finish(timeout=40)
    print(f'job ended {ended - killed_at:.1f} s after the {role} was killed')
    assert code == 1, job.output
    assert ended - killed_at < 30
    name = 'scheduler' if role == 'scheduler' else 'server 0'
    assert re.search(rf'gluonbert launch: {name}, pid \d+, was killed by SIGKILL; stopped the '
                     r'other 3 processes', job.output), job.output
    job.assert_nothing_left()


STUCK = textwrap.dedent('''
    import signal
    import mxnet as mx
    from gluonbert.dist.launcher import end_process, stop_on_signals

    stop_on_signals()
    kv = mx.kv.create('dist_sync')
    print(f'kvstore rank {kv.rank} of {kv.num_workers}', flush=True)
    kv.init(0, mx.nd.zeros((4,)))
    # A graceful stop of its own (as the training loop has), which never gets to run below.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if kv.rank == 1:
        print('error: rank 1 gives up', flush=True)
        end_process(2)
    while True:                          # rank 0 waits for rank 1's push, forever
        kv.push(0, mx.nd.ones((4,)))
        out = mx.nd.zeros((4,))
        kv.pull(0, out=out)
        out.wait_to_read()
''')


def test_a_failed_job_stops_workers_whose_graceful_stop_cannot_finish(tmp_path, jobs):
    """After a failure the launcher signals twice: a worker that keeps the first signal for a
    graceful stop, stuck waiting for the lost worker, ends on the second, long before the
    20 s grace period."""
    script = tmp_path / 'stuck.py'
    script.write_text(STUCK)
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--grace', '20', '--', sys.executable,
                      str(script)])
    failed_at = job.wait_for(r'error: rank 1 gives up')
    code, ended = job.finish(timeout=40)
    print(f'job ended {ended - failed_at:.1f} s after the error line')
    assert code == 1, job.output
    summary = job.output.splitlines()[-1]
    assert re.search(r'worker \d \(kvstore rank 1\), pid \d+, exited with code 2: error: rank 1 '
                     r'gives up; stopped the other 3 processes', summary), job.output
    seconds = float(re.search(r'processes in ([\d.]+) s', summary).group(1))
    assert seconds < 10, summary
    assert re.search(r'\[worker \d\] gluonbert: stopped by SIGTERM', job.output), job.output
    job.assert_nothing_left()


INJECT = textwrap.dedent('''
    """gluonbert's CLI, with rank 1 raising a plain Python error in training step 7."""
    import sys
    from gluonbert import cli
    from gluonbert.dist.cluster import Cluster

    real, calls = Cluster.sum_over_workers, []

    def sum_over_workers(self, values):   # called once per step (no accumulation)
        calls.append(1)
        if self.rank == 1 and len(calls) == 7:
            raise RuntimeError('injected failure in step 7')
        return real(self, values)

    Cluster.sum_over_workers = sum_over_workers
    sys.exit(cli.main(sys.argv[1:]))
''')


def test_a_worker_raising_mid_training_ends_the_job_and_resume_continues(tmp_path, jobs):
    shards = write_random_shards(tmp_path / 'shards', num_shards=4, per_shard=24, seed=3)
    out = tmp_path / 'run'
    script = tmp_path / 'inject.py'
    script.write_text(INJECT)
    args = _pretrain(shards, out, 12, '--checkpoint-interval', '3', '--log-interval', '3')
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--', sys.executable, str(script)] +
               args[3:])
    failed_at = job.wait_for(r'RuntimeError: injected failure in step 7')
    code, ended = job.finish(timeout=40)
    print(f'job ended {ended - failed_at:.1f} s after the error line')
    assert code == 1, job.output
    assert ended - failed_at < 30
    assert re.search(r'gluonbert launch: worker \d \(kvstore rank 1\), pid \d+, exited with '
                     r'code 1: RuntimeError: injected failure in step 7', job.output), job.output
    assert 'Traceback (most recent call last)' in job.output
    job.assert_nothing_left()
    steps = sorted(p.name for p in (out / 'checkpoints').glob('step-*'))
    assert steps and steps[-1] in ('step-00000003', 'step-00000006'), steps
    assert not (out / 'model.params').exists()

    resumed = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--'] + args + ['--resume'])
    code, _ = resumed.finish(timeout=90)
    assert code == 0, resumed.output
    assert f'resumed from {out / "checkpoints" / steps[-1]}' in resumed.output
    assert (out / 'model.params').exists()
    assert (out / 'checkpoints' / 'step-00000012').exists()
    resumed.assert_nothing_left()


def test_a_launcher_killed_with_sigkill_leaves_nothing(tmp_path, jobs):
    """The guards notice that the launcher's pipe closed and stop their processes."""
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--grace', '2', '--'] +
               _worker_script(tmp_path, 100_000, 0.05))
    job.wait_for(r'kvstore rank 1 of 2')
    started = job.started_pids()
    assert len(job.pids()) >= 9           # launcher, 4 guards and their 4 processes
    job.proc.kill()
    _, killed_at = job.finish(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (job.pids() or any(_alive(p) for p in started)):
        time.sleep(0.1)
    print(f'last process gone {time.monotonic() - killed_at:.1f} s after the launcher')
    assert not job.pids() and not any(_alive(p) for p in started), job.output


FAKE_SSH = '''#!/bin/sh
# Stands in for ssh to 127.0.0.1: drops the options and the host and runs the remote command
# through a shell, with standard input (the launcher's pipe) passed on, as sshd does.
while [ $# -gt 1 ]; do
    case "$1" in -o|-p) shift 2 ;; *) shift ;; esac
done
exec sh -c "$1"
'''


def test_processes_started_through_ssh_end_with_the_launcher(tmp_path, jobs):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'ssh').write_text(FAKE_SSH)
    (bin_dir / 'ssh').chmod(0o755)
    hosts = tmp_path / 'hosts'
    hosts.write_text('127.0.0.1\nlocalhost\n')
    env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'DMLC_INTERFACE': 'lo'}
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--hosts', str(hosts), '--grace', '2',
                      '--'] + _worker_script(tmp_path, 100_000, 0.05), env=env, cwd=tmp_path)
    job.wait_for(r'kvstore rank 1 of 2')
    sent = time.monotonic()
    job.proc.send_signal(signal.SIGTERM)
    code, ended = job.finish(timeout=30)
    print(f'job ended {ended - sent:.1f} s after SIGTERM')
    assert code == 143, job.output
    assert ended - sent < 15
    job.assert_nothing_left()


def test_hand_started_worker_and_scheduler_fail_when_a_peer_never_arrives(tmp_path, jobs):
    """DMLC_* set by hand, one server announced but never started: both processes end with a
    clear error after the start-up deadline instead of waiting forever."""
    from gluonbert.dist.launcher import free_port
    shards = write_random_shards(tmp_path / 'shards', num_shards=2, per_shard=16)
    env = {'DMLC_PS_ROOT_URI': '127.0.0.1', 'DMLC_PS_ROOT_PORT': str(free_port()),
           'DMLC_NUM_WORKER': '1', 'DMLC_NUM_SERVER': '1', 'DMLC_NODE_HOST': '127.0.0.1',
           'GLUONBERT_START_TIMEOUT': '4'}
    scheduler = jobs(CLI + ['launch', '--role', 'scheduler'], env=env)
    worker = jobs(_pretrain(shards, tmp_path / 'run', 5), env={**env, 'DMLC_ROLE': 'worker'})
    for job, who in ((scheduler, 'this scheduler'), (worker, r'this worker \(dist_sync')):
        code, _ = job.finish(timeout=40)
        assert code == 2, job.output
        assert re.search(rf'gluonbert: error: {who}.* waited 4 s for the other processes of the '
                         r'kvstore job \(the scheduler at 127.0.0.1:\d+, DMLC_NUM_WORKER=1 '
                         r'workers and DMLC_NUM_SERVER=1 servers\)', job.output), job.output
        job.assert_nothing_left(started=False)


def test_hand_started_job_runs_past_its_start_deadline(tmp_path, jobs):
    """Scheduler and server by hand (gluonbert launch --role) with a 6 s deadline: once every
    process has arrived the deadline no longer applies, and ps-lite's start-up lines that only
    the deadline asked for stay hidden."""
    from gluonbert.dist.launcher import free_port
    env = {'DMLC_PS_ROOT_URI': '127.0.0.1', 'DMLC_PS_ROOT_PORT': str(free_port()),
           'DMLC_NUM_WORKER': '1', 'DMLC_NUM_SERVER': '1', 'DMLC_NODE_HOST': '127.0.0.1',
           'GLUONBERT_START_TIMEOUT': '6'}
    scheduler = jobs(CLI + ['launch', '--role', 'scheduler'], env=env)
    server = jobs(CLI + ['launch', '--role', 'server'], env=env)
    worker = jobs(_worker_script(tmp_path, 60, 0.15), env={**env, 'DMLC_ROLE': 'worker'})
    worker.wait_for('kvstore rank 0 of 1', timeout=60)
    started = time.monotonic()
    for job in (worker, scheduler, server):
        code, _ = job.finish(timeout=60)
        assert code == 0, job.output
        assert 'ps-lite' not in job.output, job.output
    assert 'rank 0 sum 1.0' in worker.output
    assert time.monotonic() - started > 6          # the job did outlive the deadline


def test_launcher_start_timeout_flag(tmp_path, jobs):
    """Workers that never create the kvstore: the scheduler and the server give up after
    --start-timeout and the launcher ends the job, quoting the error."""
    job = jobs(CLI + ['launch', '-n', '1', '--start-timeout', '3', '--', sys.executable, '-c',
                      'import time; time.sleep(120)'])
    code, _ = job.finish(timeout=60)
    assert code == 1, job.output
    assert re.search(r'gluonbert launch: (scheduler|server 0), pid \d+, exited with code 2: '
                     r'gluonbert: error: this (scheduler|server) waited 3 s', job.output), \
        job.output
    job.assert_nothing_left()


SAVER = textwrap.dedent('''
    import os, signal, sys, time
    from gluonbert.dist.launcher import stop_on_signals

    def save(path):                      # stands in for a checkpoint being written
        with open(path + '.tmp', 'w') as f:
            f.write('first half\\n')
            print('ready', flush=True)
            time.sleep(3)
            f.write('second half\\n')
        os.replace(path + '.tmp', path)

    stop_on_signals(critical=[save])
    mode = sys.argv[2]
    if mode == 'save':
        save(sys.argv[1])
        time.sleep(5)
        print('still running after the save', flush=True)
        sys.exit(0)
    asked = []
    if mode != 'stuck':                  # a graceful stop of its own, as the training loop has
        signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))
    if mode == 'graceful':
        print('ready', flush=True)
        while not asked:
            time.sleep(0.05)
        print('graceful stop', flush=True)
        sys.exit(7)
    # The main thread stuck inside MXNet: a kvstore whose scheduler never comes.
    import mxnet as mx
    print('ready', flush=True)
    mx.kv.create('dist_sync')
''')


@pytest.mark.parametrize('mode', ['save', 'stuck', 'graceful', 'stuck-with-handler'])
def test_a_stopped_worker_finishes_its_checkpoint_first(tmp_path, jobs, mode):
    """stop_on_signals: a checkpoint being written is finished; a main thread stuck in MXNet
    does not delay the stop; a graceful stop of the code's own is left to it, and then a
    second signal stops the process even when that code never gets to run."""
    from gluonbert.dist.launcher import free_port
    script = tmp_path / 'saver.py'
    script.write_text(SAVER)
    target = tmp_path / 'checkpoint.txt'
    env = {'DMLC_ROLE': 'worker', 'DMLC_PS_ROOT_URI': '127.0.0.1',
           'DMLC_PS_ROOT_PORT': str(free_port()), 'DMLC_NUM_WORKER': '2',
           'DMLC_NUM_SERVER': '1', 'DMLC_NODE_HOST': '127.0.0.1'}
    job = jobs([sys.executable, str(script), str(target), mode], env=env)
    job.wait_for('ready', timeout=60)
    if mode.startswith('stuck'):
        time.sleep(1.0)                  # inside mx.kv.create by now
    sent = time.monotonic()
    job.proc.send_signal(signal.SIGTERM)
    if mode == 'stuck-with-handler':
        time.sleep(1.5)
        assert job.proc.poll() is None, job.output     # the first signal was left to the code
        sent = time.monotonic()
        job.proc.send_signal(signal.SIGTERM)
    code, ended = job.finish(timeout=20)
    if mode == 'graceful':
        assert code == 7, job.output
        assert 'graceful stop' in job.output and 'gluonbert: stopped' not in job.output
        return
    assert code == 143, job.output
    assert 'gluonbert: stopped by SIGTERM' in job.output
    if mode == 'save':
        assert 'still running' not in job.output
        assert target.read_text() == 'first half\nsecond half\n'
        assert ended - sent > 1.0          # it waited for the save
    else:
        assert ended - sent < 3


def _guard_of(job, name):
    """The PID of the guard of the job's process ``name`` (``worker 1``, ``server 0``): the
    guard's child is the PID the launcher reports for it."""
    line = next(line for _, line in job.lines if 'gluonbert launch: started' in line)
    child = int(re.search(rf'{name} \(pid (\d+)\)', line).group(1))
    with open(f'/proc/{child}/stat') as f:
        return int(f.read().rsplit(')', 1)[1].split()[1]), child


@pytest.mark.parametrize('name', ['worker 1', 'server 0'])
def test_a_killed_guard_takes_its_process_and_the_job_with_it(tmp_path, jobs, name):
    """The launcher reports the real PIDs, not its guards'. SIGKILL to a guard (what a user
    who kills a PID found in ps may hit) ends its process at once and the whole job within
    the grace period: nothing is left under PID 1."""
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--grace', '3', '--'] +
               _worker_script(tmp_path, 100_000, 0.05))
    job.wait_for(r'kvstore rank 1 of 2')
    guard, child = _guard_of(job, name)
    with open(f'/proc/{child}/cmdline', 'rb') as f:
        assert b'_process_guard' not in f.read()          # the started line names the process
    killed_at = time.monotonic()
    os.kill(guard, signal.SIGKILL)
    code, ended = job.finish(timeout=30)
    print(f'job ended {ended - killed_at:.1f} s after its guard was killed')
    assert code == 1, job.output
    assert re.search(rf'gluonbert launch: {name}.*: its guard \(pid {guard}\) was killed by '
                     rf'SIGKILL; its process \(pid {child}\) was ended', job.output), job.output
    assert not _alive(child)
    job.assert_nothing_left(timeout=5)


#: A model whose gradient is large (a 30,000-token embedding) and whose step is quick: a
#: worker's last push is then still in flight when it would leave.
LARGE_GRADIENT = '{"vocab_size": 30000, "units": 32, "hidden_size": 64, "num_layers": 1, ' \
                 '"num_heads": 2, "max_length": 64, "dropout": 0.0}'


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_a_stopped_job_writes_the_checkpoint_every_worker_names(tmp_path, jobs, sig):
    """SIGTERM/SIGINT to the launcher of a 2-worker pretraining: both workers stop after the
    same update; rank 0 writes its checkpoint while rank 1 waits for it (rank 1 leaving at
    once took its last gradient with it and rank 0 hung in the save until the grace period
    killed it); both name that checkpoint, it is complete, and the job ends well within the
    grace period."""
    from gluonbert.runs import read_checkpoint_meta
    shards = write_random_shards(tmp_path / 'shards', num_shards=4, per_shard=24, seed=3)
    config = tmp_path / 'model.json'
    config.write_text(LARGE_GRADIENT)
    out = tmp_path / 'run'
    job = jobs(CLI + ['launch', '-n', '2', '-s', '1', '--grace', '20', '--'] +
               _pretrain(shards, out, 100_000, '--config', str(config),   # instead of --model
                         '--checkpoint-interval', '1000', '--log-interval', '5'))
    job.wait_for(r'\[worker \d\] step 5 ')
    sent = time.monotonic()
    job.proc.send_signal(sig)
    code, ended = job.finish(timeout=60)
    print(f'job ended {ended - sent:.1f} s after {sig.name}')
    assert code == 128 + sig, job.output
    named = re.findall(rf'\[worker \d\] gluonbert pretrain: stopped by {sig.name} after update '
                       r'(\d+) of 100000; checkpoint (\S+)\. Continue', job.output)
    assert len(named) == 2 and named[0] == named[1], job.output
    step, path = named[0]
    assert path == str(out / 'checkpoints' / f'step-{int(step):08d}')
    assert read_checkpoint_meta(path)['step'] == int(step)           # complete, sha1-checked
    assert not list((out / 'checkpoints').glob('.tmp-*'))
    assert ended - sent < 15, job.output                  # nobody waited for the 20 s grace
    job.assert_nothing_left()
