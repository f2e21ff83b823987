"""Start an MXNet parameter-server job (scheduler, servers, workers) and end it cleanly.

MXNet's distributed kvstore (``dist_sync``, ``dist_sync_device``, ``dist_async``) is started
by environment variables: every process gets ``DMLC_PS_ROOT_URI``/``DMLC_PS_ROOT_PORT`` (where
the scheduler listens), ``DMLC_NUM_WORKER``, ``DMLC_NUM_SERVER`` and its role. The scheduler
and the servers run ``gluonbert launch --role scheduler|server``
(:func:`gluonbert.dist.rendezvous.serve`); the workers run the user's command with
``DMLC_ROLE=worker``.

This is what ``mxnet/tools/launch.py`` sets up too; its ``dmlc_tracker`` back-end fails on
Python >= 3.9 (``Thread.isAlive`` no longer exists) and, like any plain launcher, it leaves the
surviving processes blocked forever in a ``dist_sync`` barrier when one of them dies.
:func:`launch` prefixes every output line with the process's role, and ends the whole job when

* any process dies or exits with an error (a scheduler or server that leaves while workers
  still run counts too): every other process is stopped, and the launcher names the process,
  its kvstore rank and its last error line, and returns 1;
* the launcher receives SIGINT, SIGTERM or SIGHUP: the signal is passed on to every process
  (SIGHUP as SIGTERM), whatever is still running after a grace period is killed, and the
  launcher returns 130, 143 or 129.

Every process runs under a small guard (:func:`_process_guard`, plain Python without MXNet) that
holds the read end of a pipe from the launcher. If that pipe closes (the launcher was killed
with SIGKILL, or the ssh connection to a remote host broke) the guard stops its process: SIGTERM,
the grace period, then SIGKILL to its whole process group. So nothing of a job outlives its
launcher, on this machine or on hosts reached through ssh.

Workers that are gluonbert commands end themselves at once when they fail
(:func:`stop_on_signals`, :func:`end_process`, called by ``gluonbert.cli.main`` when
``DMLC_ROLE=worker``): a Python process that exits normally after creating a ``dist`` kvstore
waits in ps-lite's shutdown barrier for every other worker, which never comes when it is the
one that failed.

Hosts: with a hosts file (one ``host`` or ``host:ssh_port`` per line, as MXNet's ssh launcher
reads), the scheduler runs on the first host and servers and workers are placed round-robin
over the hosts, each started through ``ssh host 'cd DIR && exec env ... GUARD COMMAND'``.
"""
import dataclasses
import inspect
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from ..errors import ConfigError, DataFormatError
from ..platform import default_threads

__all__ = ['LaunchConfig', 'launch', 'free_port', 'read_hosts', 'stop_on_signals',
           'end_process', 'check_worker_command']

_RANK_LINE = re.compile(r'kvstore rank (\d+) of (\d+)')
# A line worth quoting when a process fails: gluonbert's "error:" line, the last line of a
# Python traceback ("RuntimeError: ..."), a C++ check of MXNet/ps-lite.
_ERROR_LINE = re.compile(r'error\b|exception\b|check failed|fatal', re.IGNORECASE)
# Variables of the launcher's environment passed on to processes on other hosts.
_FORWARDED_PREFIXES = ('DMLC_', 'PS_', 'MXNET_', 'GLUONBERT_', 'OMP_')


@dataclasses.dataclass
class LaunchConfig:
    """How many processes of each role, and where.

    Parameters
    ----------
    num_workers : int
        Worker processes (each runs the user's command).
    num_servers : int
        Parameter servers (each holds a slice of every parameter).
    hosts : list of str, optional
        ``host`` or ``host:port`` entries for ssh; None runs everything on this machine.
    port : int, optional
        Scheduler port; a free one is chosen when None (local runs).
    interface_host : str
        Address the processes advertise on a local run (loopback by default).
    stop_grace_s : float
        Seconds a process has to end after SIGTERM/SIGINT before it is killed (SIGKILL).
    start_timeout_s : float, optional
        Start-up deadline of every process (``GLUONBERT_START_TIMEOUT``, see
        :mod:`gluonbert.dist.rendezvous`); None keeps the environment's or the default.
    """
    num_workers: int
    num_servers: int = 1
    hosts: list = None
    port: int = None
    interface_host: str = '127.0.0.1'
    stop_grace_s: float = 5.0
    start_timeout_s: float = None

    def __post_init__(self):
        if self.num_workers is None or self.num_workers < 1 or self.num_servers < 1:
            raise ConfigError(f'launch: num_workers={self.num_workers}, num_servers='
                              f'{self.num_servers}; expected at least 1 of each')
        if self.stop_grace_s < 0:
            raise ConfigError(f'launch: stop grace {self.stop_grace_s} s; expected >= 0')


def free_port(host='127.0.0.1'):
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def read_hosts(path):
    """Reads a hosts file: one ``host`` or ``host:ssh_port`` per line, ``#`` comments."""
    hosts = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if not re.fullmatch(r'[A-Za-z0-9_.\-]+(:\d+)?', line):
                raise DataFormatError(path, number, f'{line!r} is not a host or host:port')
            hosts.append(line)
    if not hosts:
        raise DataFormatError(path, None, 'no hosts listed; expected one host per line')
    return hosts


# ----------------------------------------------------------------------------------------------
# In the worker process (gluonbert.cli.main, when DMLC_ROLE=worker)

def end_process(code):
    """Flushes standard output, standard error and the log files, then ends the process with
    ``code`` at once (``os._exit``): no atexit handler runs, so a worker does not wait in the
    kvstore's shutdown barrier for peers that will never come."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        logging.shutdown()
    except Exception:   # noqa: BLE001 -- the process ends either way
        pass
    os._exit(code)


def _frames(thread_id):
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        yield frame
        frame = frame.f_back


def stop_on_signals(critical=(), poll_s=0.05):
    """SIGINT and SIGTERM end this process at once (exit 130/143), even while its main thread
    is blocked inside MXNet, except that a call to a ``critical`` function running on the main
    thread (a checkpoint being written) is let finish first.

    A Python signal handler runs only when the main thread executes Python code, never while it
    waits inside MXNet's C++ (a kvstore barrier). Here the signal is read by a thread from
    :func:`signal.set_wakeup_fd`'s pipe, so it is seen at once; that thread ends the process
    with :func:`end_process` as soon as no ``critical`` frame is on the main thread's stack.
    The launcher's grace period bounds the wait. Call it from the main thread.

    Code that installs its own handler for a while (the training loop, which stops every worker
    after the same update with a checkpoint) keeps the first signal to itself: this thread then
    acts on the second one only, also when the main thread is stuck and that handler never
    runs.

    Parameters
    ----------
    critical : sequence of functions
        The ``gluonbert`` command passes :func:`gluonbert.train.checkpoint.save_checkpoint`.
    poll_s : float
        How often the main thread's stack is looked at while a critical call runs.
    """
    codes = {func.__code__ for func in critical}
    main = threading.main_thread().ident
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def handler(signum, frame):      # the wakeup pipe does the work
        pass
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch():
        left_to_others = False
        while True:
            for signum in os.read(read_end, 16):
                if signum not in (signal.SIGINT, signal.SIGTERM):
                    continue
                if signal.getsignal(signum) is not handler and not left_to_others:
                    left_to_others = True
                    continue
                while any(f.f_code in codes for f in _frames(main)):
                    time.sleep(poll_s)
                name = signal.Signals(signum).name
                print(f'gluonbert: stopped by {name}', file=sys.stderr, flush=True)
                end_process(128 + signum)

    threading.Thread(target=watch, name='gluonbert-stop-on-signals', daemon=True).start()


# ----------------------------------------------------------------------------------------------
# The guard around every process of a job (runs as `python -c SOURCE GRACE COMMAND...`)

def _process_guard():
    """Runs ``sys.argv[2:]`` in this process group and stops it when standard input closes.

    Standard input is a pipe from the launcher (through ssh on other hosts). It closes when the
    launcher ends in any way, even SIGKILL, or when the ssh connection is lost; the command
    then gets SIGTERM and, ``sys.argv[1]`` seconds later, the whole process group SIGKILL.
    SIGINT, SIGTERM and SIGHUP sent to the guard are passed on to the command. The guard ends
    like the command: same exit code, or killed by the same signal; and the command ends with
    the guard: on Linux it gets SIGKILL when the guard dies (``PR_SET_PDEATHSIG``), so killing
    the guard, even with SIGKILL, leaves no orphan. The command's PID is reported to the
    launcher in a line of its own (:data:`_GUARD_LINE`). Uses the standard library only (it is
    sent as source text, also to hosts where only Python is known to exist).
    """
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time
    grace, command = float(sys.argv[1]), sys.argv[2:]
    if os.getpgid(0) != os.getpid():
        os.setpgid(0, 0)
    guard = os.getpid()

    def die_with_the_guard():       # in the child, before exec
        try:
            import ctypes
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))      # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != guard:   # the guard died before prctl took effect
            os._exit(1)
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=(
            die_with_the_guard if sys.platform.startswith('linux') else None))
    except OSError as err:
        print(f'gluonbert launch: error: cannot start {command[0]!r}: {err.strerror}',
              flush=True)
        os._exit(127)
    print(f'gluonbert-launch-guard: pid {child.pid}', flush=True)

    def forward(signum, frame):
        try:
            child.send_signal(signum)
        except OSError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)

    finished = threading.Event()

    def watch_stdin():
        while os.read(0, 4096):
            pass
        forward(signal.SIGTERM, None)
        if not finished.wait(grace):
            os.killpg(0, signal.SIGKILL)
    threading.Thread(target=watch_stdin, daemon=True).start()
    code = child.wait()
    finished.set()
    print(f'gluonbert-launch-guard: ended {code}', flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)     # what the command left behind in its group
    except OSError:
        pass
    sys.stdout.flush()
    if code < 0:
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):   # SIGKILL, SIGSTOP: default already
            pass
        os.kill(os.getpid(), -code)
        time.sleep(1)
    os._exit(code if code >= 0 else 128 - code)


_GUARD_SOURCE = inspect.getsource(_process_guard) + '\n_process_guard()\n'
#: The guard's report of its command's PID (read by the launcher, not shown).
_GUARD_LINE = re.compile(r'^gluonbert-launch-guard: (pid|ended) (-?\d+)$')


def _guarded(command, grace):
    return [sys.executable, '-c', _GUARD_SOURCE, f'{grace:g}', *command]


# ----------------------------------------------------------------------------------------------
# The launcher

def _group_alive(pgid):
    """Whether a process group still has a live (not zombie) member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir('/proc'):
        return True
    for entry in os.listdir('/proc'):       # zombies count for killpg: look at each member
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', encoding='utf-8', errors='replace') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            return True
    return False


@dataclasses.dataclass
class _Process:
    """One process of the job: its guard (``popen``, the leader of the process group the
    process runs in, locally) and the process itself (``pid``, reported by the guard)."""
    name: str
    role: str
    popen: subprocess.Popen
    remote: bool
    host: str = None
    pid: int = None
    ended: int = None
    rank: int = None
    error_line: str = None
    stream: threading.Thread = None
    exited_at: float = None

    def alive(self):
        """The guard runs, or (locally) something of its process group still does."""
        if self.popen.poll() is None:
            return True
        return not self.remote and _group_alive(self.popen.pid)

    def send(self, sig):
        """Passes ``sig`` on: to the guard, which forwards it to the process (local), or to the
        process group when the guard is gone; on another host the guard's pipe is closed (it
        then sends SIGTERM)."""
        if self.remote:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
            return
        try:
            if self.popen.poll() is None:
                os.kill(self.popen.pid, sig)
            else:
                os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL to the guard's process group, also when the guard itself is gone (on
        another host: to the ssh client; the remote guard then ends its process)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def describe_pid(self):
        where = f' on {self.host.partition(":")[0]}' if self.remote else ''
        return f'pid {self.pid}{where}' if self.pid else f'guard pid {self.popen.pid}'


def _spawn(name, role, command, env, host, workdir, grace):
    guarded = _guarded(command, grace)
    if host is None:
        popen = subprocess.Popen(guarded, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    else:
        address, _, ssh_port = host.partition(':')
        exports = ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())
        remote = f'cd {shlex.quote(workdir)} && exec env {exports} {shlex.join(guarded)}'
        ssh = ['ssh', '-o', 'StrictHostKeyChecking=no', '-o', 'BatchMode=yes',
               '-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=3']
        if ssh_port:
            ssh += ['-p', ssh_port]
        popen = subprocess.Popen(ssh + [address, remote], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    return _Process(name, role, popen, remote=host is not None, host=host)


def _stream(proc, out, lock):
    for raw in iter(proc.popen.stdout.readline, b''):
        line = raw.decode('utf-8', 'replace').rstrip('\n')
        guard = _GUARD_LINE.match(line)
        if guard:
            if guard.group(1) == 'pid':
                proc.pid = int(guard.group(2))
            else:
                proc.ended = int(guard.group(2))
            continue
        match = _RANK_LINE.search(line)
        if match and proc.role == 'worker':
            proc.rank = int(match.group(1))
        if _ERROR_LINE.search(line):
            proc.error_line = line.strip()
        with lock:
            print(f'[{proc.name}] {line}', file=out, flush=True)


def _describe(proc):
    code = proc.popen.returncode
    rank = f' (kvstore rank {proc.rank})' if proc.rank is not None else ''
    if code < 0 and proc.ended is None and not proc.remote:
        # the guard was killed, not the process (which the guard's death ends too)
        return (f'{proc.name}{rank}: its guard (pid {proc.popen.pid}) was killed by '
                f'{signal.Signals(-code).name}; its process ({proc.describe_pid()}) was ended')
    if code < 0:
        how = f'was killed by {signal.Signals(-code).name}'
    elif code == 0:
        how = 'exited with code 0 while workers were still running'
    else:
        how = f'exited with code {code}'
    line = f': {proc.error_line}' if code > 0 and proc.error_line else ''
    return f'{proc.name}{rank}, {proc.describe_pid()}, {how}{line}'


class _Signals:
    """SIGINT/SIGTERM/SIGHUP to the launcher, recorded instead of ending it (main thread
    only)."""

    def __init__(self):
        self.received = []
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def _record(self, signum, frame):
        self.received.append(signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _stop(procs, grace, sig, signals, failed=False):
    """Passes ``sig`` on and kills what is left after ``grace`` s (sooner if another signal
    comes to the launcher). Returns the seconds it took.

    When nothing ``failed`` (the launcher was signalled), the workers get ``sig`` first and the
    scheduler and servers once the workers are gone: a worker that stops gracefully (the
    training loop finishing the current update on every worker, with a checkpoint) still needs
    the servers, and workers that end normally take the servers and the scheduler with them
    through ps-lite's shutdown.

    After a failure no graceful stop can finish (the training loop waits for the lost
    process): every process gets ``sig`` at once, and the workers get it a second time a moment
    later, which to gluonbert workers means "stop now".
    """
    began = time.monotonic()
    already = len(signals.received)
    workers = [p for p in procs if p.role == 'worker']
    others = [p for p in procs if p.role != 'worker']
    for p in (procs if failed else workers):
        p.send(sig)
    again_after = min(1.0, grace / 2) if failed else None
    # Remote guards use their own grace after the pipe closes: wait a little longer for them.
    wait = grace + (2.0 if any(p.remote for p in procs) else 0.0)
    workers_gone_at, others_told = None, failed
    while (time.monotonic() - began < wait and any(p.alive() for p in procs)
           and len(signals.received) == already):
        now = time.monotonic()
        if again_after is not None and now - began >= again_after:
            again_after = None
            for p in workers:
                if not p.remote:
                    p.send(sig)
        if workers_gone_at is None and not any(p.alive() for p in workers):
            workers_gone_at = now
        # Servers end by themselves within moments of a normal end of every worker.
        if not others_told and workers_gone_at is not None and now - workers_gone_at > 1.0:
            others_told = True
            for p in others:
                p.send(sig)
        time.sleep(0.05)
    for p in procs:
        p.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.alive() for p in procs):
        time.sleep(0.05)
    return time.monotonic() - began


def _environment(config, role, host, base):
    if host is None:
        env = {k: v for k, v in os.environ.items() if k != 'DMLC_ROLE'}
        env['DMLC_NODE_HOST'] = config.interface_host
    else:
        env = {k: v for k, v in os.environ.items()
               if k.startswith(_FORWARDED_PREFIXES) and k != 'DMLC_ROLE'}
    env.update(base)
    if role == 'worker':
        env['DMLC_ROLE'] = 'worker'
    return env


def _option(args, name):
    """The value of ``--name`` (or an abbreviation argparse accepts) in ``args``, else None."""
    value = None
    for index, arg in enumerate(args):
        flag, has_value, inline = arg.partition('=')
        if len(flag) > 3 and flag.startswith('--') and name.startswith(flag):
            value = inline if has_value else (args[index + 1] if index + 1 < len(args)
                                              else None)
    return value


def check_worker_command(command):
    """Refuses a ``gluonbert pretrain|finetune`` worker command that would not train as one
    job: without a ``dist_*`` kvstore every worker would be an independent run writing the
    same ``--out-dir``, and Horovod jobs are started by ``horovodrun``. Other commands are
    not inspected (their workers refuse a non-distributed kvstore themselves when they are
    gluonbert's)."""
    names = [os.path.basename(arg) for arg in command]
    start = None
    if names and names[0] == 'gluonbert':
        start = 1
    elif '-m' in command[:-1]:
        module = command[command.index('-m') + 1]
        if module in ('gluonbert', 'gluonbert.cli'):
            start = command.index('-m') + 2
    if start is None:
        return
    rest = command[start:]
    sub = next((arg for arg in rest if not arg.startswith('-')), None)
    if sub not in ('pretrain', 'finetune'):
        return
    args = rest[rest.index(sub) + 1:]
    if _option(args, '--comm-backend') == 'horovod':
        raise ConfigError(f'launch: gluonbert {sub} --comm-backend horovod; expected --kvstore '
                          'dist_sync under gluonbert launch (Horovod jobs are started by '
                          'horovodrun: docs/distributed.md)')
    kvstore = _option(args, '--kvstore')
    if not str(kvstore).startswith('dist'):
        given = f'--kvstore {kvstore}' if kvstore else 'no --kvstore (device: one process)'
        raise ConfigError(f'launch: gluonbert {sub} with {given}; expected --kvstore '
                          'dist_sync (or dist_sync_device, dist_async): without a distributed '
                          'kvstore every worker would train on its own, as independent runs '
                          'into the same --out-dir. Add --kvstore dist_sync, or run the '
                          'command without gluonbert launch as one process')


def _check_port(host, port):
    """Refuses a scheduler port that a running program listens on (this machine only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as ps-lite binds
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ConfigError(f'launch: --port {port}: cannot listen on {host}:{port} '
                              f'({err.strerror}); expected a free port for the scheduler, '
                              'or omit --port to take one') from None


def launch(command, config, out=sys.stdout, workdir=None, extra_env=None):
    """Runs ``command`` as every worker of a parameter-server job; returns an exit code.

    Parameters
    ----------
    command : list of str
        The worker command, e.g. ``['gluonbert', 'pretrain', '--kvstore', 'dist_sync', ...]``.
    config : LaunchConfig
    out : file
        Where the prefixed output of every process goes.
    workdir : str, optional
        Working directory on remote hosts (default: the current one).
    extra_env : dict, optional
        More environment variables for every process.

    Returns
    -------
    int
        0 when every worker exited 0; 1 when a process failed (after stopping all the others);
        128 + the signal number (130, 143, 129) when the launcher got SIGINT, SIGTERM, SIGHUP.
    """
    if not command:
        raise ConfigError('launch: no worker command given (put it after --)')
    if not config.hosts and shutil.which(command[0]) is None:
        raise ConfigError(f'launch: cannot start worker 0: {command[0]!r} is not an executable '
                          'program; expected an executable command after --')
    check_worker_command(command)
    hosts = config.hosts
    if config.port and not hosts:
        _check_port(config.interface_host, config.port)
    root = hosts[0].partition(':')[0] if hosts else config.interface_host
    port = config.port or free_port(config.interface_host if not hosts else '0.0.0.0')
    base = {'DMLC_PS_ROOT_URI': root, 'DMLC_PS_ROOT_PORT': str(port),
            'DMLC_NUM_WORKER': str(config.num_workers),
            'DMLC_NUM_SERVER': str(config.num_servers), 'PS_VERBOSE': '0'}
    if config.start_timeout_s is not None:
        base['GLUONBERT_START_TIMEOUT'] = f'{config.start_timeout_s:g}'
    if not hosts and 'OMP_NUM_THREADS' not in os.environ:
        default_threads(base, workers=config.num_workers)   # they share this host's cores
    base.update(extra_env or {})
    workdir = workdir or os.getcwd()
    serve = [sys.executable, '-m', 'gluonbert.cli', 'launch', '--role']
    roles = [('scheduler', 'scheduler', serve + ['scheduler'])]
    roles += [(f'server {i}', 'server', serve + ['server']) for i in range(config.num_servers)]
    roles += [(f'worker {i}', 'worker', list(command)) for i in range(config.num_workers)]
    lock = threading.Lock()
    procs = []
    with _Signals() as signals:
        try:
            for index, (name, role, cmd) in enumerate(roles):
                host = hosts[max(index - 1, 0) % len(hosts)] if hosts else None
                env = _environment(config, role, host, base)
                try:
                    proc = _spawn(name, role, cmd, env, host, workdir, config.stop_grace_s)
                except OSError as err:      # no ssh client, or no Python at sys.executable
                    raise ConfigError(f'launch: cannot start {name}: {err}') from None
                procs.append(proc)
                proc.stream = threading.Thread(target=_stream, args=(proc, out, lock),
                                               daemon=True)
                proc.stream.start()
            deadline = time.monotonic() + 10      # the guards report their processes' PIDs
            while (time.monotonic() < deadline and not signals.received
                   and any(p.pid is None and p.popen.poll() is None for p in procs)):
                time.sleep(0.02)
            with lock:
                print('gluonbert launch: started ' + ', '.join(
                    f'{p.name} ({p.describe_pid()})' for p in procs), file=out, flush=True)
            return _supervise(procs, config, out, lock, signals)
        except BaseException:
            _stop(procs, config.stop_grace_s, signal.SIGTERM, signals, failed=True)
            raise
        finally:
            for p in procs:
                if p.stream is not None:
                    p.stream.join(timeout=2)


def _supervise(procs, config, out, lock, signals):
    workers = [p for p in procs if p.role == 'worker']
    while True:
        if signals.received:
            sig = signals.received[0]
            # The processes have no terminal: a hang-up of the launcher's is a SIGTERM to them.
            passed = signal.SIGTERM if sig == signal.SIGHUP else sig
            seconds = _stop(procs, config.stop_grace_s, passed, signals)
            with lock:
                print(f'gluonbert launch: {signal.Signals(sig).name} received; stopped all '
                      f'{len(procs)} processes in {seconds:.1f} s', file=out, flush=True)
            return 128 + sig
        now = time.monotonic()
        failed = None
        for p in procs:
            code = p.popen.poll()
            if code is None:
                continue
            if p.exited_at is None:
                p.exited_at = now
            if code != 0:
                failed = p
                break
            # A scheduler or server that leaves with code 0 while workers run: the workers
            # finishing also end them, so allow the workers a moment to exit too.
            if (p.role != 'worker' and any(w.alive() for w in workers)
                    and now - p.exited_at > 10):
                failed = p
                break
        if failed is not None:
            failed.stream.join(timeout=2)          # its last lines, with the error, are read
            seconds = _stop(procs, config.stop_grace_s, signal.SIGTERM, signals, failed=True)
            with lock:
                print(f'gluonbert launch: {_describe(failed)}; stopped the other '
                      f'{len(procs) - 1} processes in {seconds:.1f} s', file=out, flush=True)
            return 1
        if all(p.popen.poll() == 0 for p in workers):
            # Servers and the scheduler leave by themselves once workers finalize.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(p.alive() for p in procs):
                time.sleep(0.1)
            _stop(procs, config.stop_grace_s, signal.SIGTERM, signals, failed=True)
            return 0
        time.sleep(0.1)
