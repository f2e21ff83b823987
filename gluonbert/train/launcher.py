"""Start an MXNet parameter-server job (scheduler, servers, workers) and fail fast.

MXNet's distributed kvstore (``dist_sync``, ``dist_sync_device``, ``dist_async``) is started
by environment variables: every process gets ``DMLC_PS_ROOT_URI``/``DMLC_PS_ROOT_PORT`` (where
the scheduler listens), ``DMLC_NUM_WORKER``, ``DMLC_NUM_SERVER`` and its ``DMLC_ROLE``. A
scheduler or server is any Python process that imports ``mxnet`` with that role: the import
runs the server loop and exits when the workers finish.

This is what ``mxnet/tools/launch.py`` sets up too; its ``dmlc_tracker`` back-end fails on
Python >= 3.9 (``Thread.isAlive`` no longer exists) and, like it, a plain launcher leaves
the surviving processes blocked forever in a ``dist_sync`` barrier when one worker dies.
:func:`launch` sets the same variables, prefixes every output line with the process's role,
and when any process dies it stops all the others and returns non-zero within seconds.

Hosts: with a hosts file (one ``host`` or ``host:ssh_port`` per line, as MXNet's ssh launcher
reads), the scheduler runs on the first host and servers and workers are placed round-robin
over the hosts, each started through ``ssh host 'cd DIR && env ... COMMAND'``.
"""
import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from ..errors import ConfigError, DataFormatError

__all__ = ['LaunchConfig', 'launch', 'free_port', 'read_hosts']

_RANK_LINE = re.compile(r'kvstore rank (\d+) of (\d+)')
_SERVER_COMMAND = [sys.executable, '-c', 'import mxnet']


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
        Seconds between SIGTERM and SIGKILL when stopping the job.
    """
    num_workers: int
    num_servers: int = 1
    hosts: list = None
    port: int = None
    interface_host: str = '127.0.0.1'
    stop_grace_s: float = 5.0

    def __post_init__(self):
        if self.num_workers < 1 or self.num_servers < 1:
            raise ConfigError(f'launch: num_workers={self.num_workers}, num_servers='
                              f'{self.num_servers}; expected at least 1 of each')


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


@dataclasses.dataclass
class _Process:
    name: str
    role: str
    popen: subprocess.Popen
    rank: int = None


def _spawn(name, role, command, env, host, workdir):
    if host is None:
        popen = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    else:
        address, _, ssh_port = host.partition(':')
        exports = ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())
        remote = f'cd {shlex.quote(workdir)} && env {exports} {shlex.join(command)}'
        ssh = ['ssh', '-o', 'StrictHostKeyChecking=no', '-o', 'BatchMode=yes']
        if ssh_port:
            ssh += ['-p', ssh_port]
        popen = subprocess.Popen(ssh + [address, remote], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return _Process(name, role, popen)


def _stream(proc, out, lock):
    for raw in iter(proc.popen.stdout.readline, b''):
        line = raw.decode('utf-8', 'replace').rstrip('\n')
        match = _RANK_LINE.search(line)
        if match and proc.role == 'worker':
            proc.rank = int(match.group(1))
        with lock:
            print(f'[{proc.name}] {line}', file=out, flush=True)


def _stop(procs, grace):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            if p.popen.poll() is None:
                try:
                    os.killpg(p.popen.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.popen.poll() is None for p in procs):
            time.sleep(0.05)


def _describe(proc):
    code = proc.popen.returncode
    how = f'was killed by {signal.Signals(-code).name}' if code < 0 else f'exited with code {code}'
    rank = f' (kvstore rank {proc.rank})' if proc.rank is not None else ''
    return f'{proc.name}{rank}, pid {proc.popen.pid}, {how}'


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
        0 when every worker exited 0; otherwise non-zero, after stopping every process.
    """
    if not command:
        raise ConfigError('launch: no worker command given (put it after --)')
    hosts = config.hosts
    root = hosts[0].partition(':')[0] if hosts else config.interface_host
    port = config.port or free_port(config.interface_host if not hosts else '0.0.0.0')
    base = {'DMLC_PS_ROOT_URI': root, 'DMLC_PS_ROOT_PORT': str(port),
            'DMLC_NUM_WORKER': str(config.num_workers),
            'DMLC_NUM_SERVER': str(config.num_servers), 'PS_VERBOSE': '0',
            **(extra_env or {})}
    workdir = workdir or os.getcwd()
    roles = [('scheduler', 'scheduler', _SERVER_COMMAND)]
    roles += [(f'server {i}', 'server', _SERVER_COMMAND) for i in range(config.num_servers)]
    roles += [(f'worker {i}', 'worker', list(command)) for i in range(config.num_workers)]
    lock = threading.Lock()
    procs, threads = [], []
    for index, (name, role, cmd) in enumerate(roles):
        host = hosts[max(index - 1, 0) % len(hosts)] if hosts else None
        env = dict(base, DMLC_ROLE=role)
        if host is None:
            env['DMLC_NODE_HOST'] = config.interface_host
        if role == 'worker':
            env['GLUONBERT_LAUNCH_INDEX'] = name.split()[-1]
        try:
            proc = _spawn(name, role, cmd, env, host, workdir)
        except OSError as err:
            _stop(procs, config.stop_grace_s)
            raise ConfigError(f'launch: cannot start {name}: {cmd[0]!r}: {err.strerror}; '
                              'expected an executable command after --') from None
        procs.append(proc)
        thread = threading.Thread(target=_stream, args=(proc, out, lock), daemon=True)
        thread.start()
        threads.append(thread)
    workers = [p for p in procs if p.role == 'worker']
    try:
        while True:
            failed = [p for p in procs if p.popen.poll() not in (None, 0)]
            if failed:
                _stop(procs, config.stop_grace_s)
                with lock:
                    print(f'gluonbert launch: {_describe(failed[0])}; stopped the other '
                          f'{len(procs) - 1} processes', file=out, flush=True)
                return 1
            if all(p.popen.poll() == 0 for p in workers):
                # Servers and the scheduler leave by themselves once workers finalize.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(p.popen.poll() is None
                                                          for p in procs):
                    time.sleep(0.1)
                _stop(procs, config.stop_grace_s)
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(procs, config.stop_grace_s)
        return 130
    finally:
        for thread in threads:
            thread.join(timeout=2)
