"""Start-up of an MXNet kvstore job with a deadline, so that a missing peer is an error, not a hang.

ps-lite (the parameter server inside MXNet) starts every process of a ``dist_*`` job with a
barrier: the scheduler waits until ``DMLC_NUM_WORKER`` workers and ``DMLC_NUM_SERVER`` servers
have registered, and each of them waits for the scheduler's answer. A process that is never
started (a typo in a port, a host that did not come up) leaves all the others waiting forever.
Here every role gets a start-up deadline (:func:`start_timeout`: ``GLUONBERT_START_TIMEOUT``,
``gluonbert launch --start-timeout``): a process whose peers have not all arrived by then prints
what it waited for and ends with exit code 2.

* Workers: :func:`create_kvstore` wraps ``mx.kv.create``, which returns once the barrier is
  passed.
* Scheduler and servers: :func:`serve` (``gluonbert launch --role scheduler|server``). Their
  start-up happens inside MXNet's C++ server loop, which Python never regains before the job
  ends, so :func:`serve` reads ps-lite's own start-up lines ("... is connected ...", printed when
  ``PS_VERBOSE`` >= 1) from the process's standard error to know that the barrier was passed.
"""
import os
import re
import signal
import sys
import threading

from ..errors import ConfigError

__all__ = ['DEFAULT_START_TIMEOUT', 'TIMEOUT_VARIABLE', 'start_timeout', 'create_kvstore',
           'serve']

DEFAULT_START_TIMEOUT = 120.0
TIMEOUT_VARIABLE = 'GLUONBERT_START_TIMEOUT'
_JOB_VARIABLES = ('DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_WORKER', 'DMLC_NUM_SERVER')
# ps-lite's start-up line of a server or worker, and of the scheduler.
_CONNECTED = re.compile(r'is connected to others|the scheduler is connected to \d+ workers')
# ps-lite's PS_VERBOSE=1 lines (van.cc, zmq_van.h); hidden when only the deadline asked for them.
_VERBOSE_LINE = re.compile(r'ps-lite/src/.*(Bind to |assign rank|is connected to|Barrier count|'
                           r'is stopping|is stopped)')


def start_timeout(seconds=None):
    """The start-up deadline in seconds: ``seconds``, else ``$GLUONBERT_START_TIMEOUT``, else
    :data:`DEFAULT_START_TIMEOUT`. Zero or less means no deadline."""
    if seconds is None:
        raw = os.environ.get(TIMEOUT_VARIABLE, '')
        if raw.strip() == '':
            return DEFAULT_START_TIMEOUT
        try:
            seconds = float(raw)
        except ValueError:
            raise ConfigError(f'{TIMEOUT_VARIABLE}={raw!r}: expected a number of seconds') \
                from None
    return float(seconds)


def _job():
    env = os.environ
    return (f'the scheduler at {env.get("DMLC_PS_ROOT_URI")}:{env.get("DMLC_PS_ROOT_PORT")}, '
            f'DMLC_NUM_WORKER={env.get("DMLC_NUM_WORKER")} workers and '
            f'DMLC_NUM_SERVER={env.get("DMLC_NUM_SERVER")} servers')


def _late_message(who, seconds):
    return (f'gluonbert: error: {who} waited {seconds:g} s for the other processes of the kvstore '
            f'job ({_job()}) and at least one never arrived; start every process with the same '
            'DMLC_PS_ROOT_URI and DMLC_PS_ROOT_PORT (docs/distributed.md), or allow more time '
            f'with {TIMEOUT_VARIABLE} (gluonbert launch --start-timeout)')


class _Deadline:
    """Ends the process (exit code 2) with ``message`` unless :meth:`met` is called in time.

    A thread does it because the main thread is blocked inside MXNet's C++ start-up, where no
    Python exception can reach it.
    """

    def __init__(self, seconds, message, stream):
        self._met = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(seconds, message, stream),
                                        name='gluonbert-start-deadline', daemon=True)
        self._thread.start()

    def _watch(self, seconds, message, stream):
        if self._met.wait(seconds):
            return
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        try:
            os.write(stream, (message + '\n').encode('utf-8', 'replace'))
        finally:
            os._exit(2)

    def met(self):
        self._met.set()


def create_kvstore(kvstore, timeout=None):
    """``mx.kv.create(kvstore)`` with the start-up deadline for ``dist_*`` types.

    Parameters
    ----------
    kvstore : str
        Any ``mx.kv.create`` type; only ``dist_*`` ones wait for other processes.
    timeout : float, optional
        Seconds; default :func:`start_timeout`.

    Outputs
    -------
    mx.kv.KVStore
    """
    import mxnet as mx
    seconds = start_timeout(timeout)
    if 'dist' not in str(kvstore) or seconds <= 0:
        return mx.kv.create(kvstore)
    deadline = _Deadline(seconds, _late_message(f'this worker ({kvstore} kvstore)', seconds), 2)
    kv = mx.kv.create(kvstore)
    deadline.met()
    return kv


def serve(role, timeout=None):
    """Runs this process as the scheduler or one server of a kvstore job, until the job ends.

    What ``python -c 'import mxnet'`` with ``DMLC_ROLE`` set does, plus: SIGINT and SIGTERM end
    the process at once (a plain ``import mxnet`` server ignores Ctrl-C while it blocks in C++),
    and the start-up deadline of :func:`start_timeout`. The role is given here, and set in
    ``DMLC_ROLE`` only after ``mxnet`` is imported: importing ``mxnet`` with a server role runs
    the server inside the import, before the deadline could be armed.

    Parameters
    ----------
    role : {'scheduler', 'server'}
    timeout : float, optional
        Seconds; default :func:`start_timeout`.
    """
    if role not in ('scheduler', 'server'):
        raise ConfigError(f'--role {role!r}: expected scheduler or server')
    missing = [name for name in _JOB_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ConfigError(f'--role {role}: {", ".join(missing)} not set; expected the DMLC_* '
                          'variables of the job in the environment (docs/distributed.md)')
    if os.environ.get('DMLC_ROLE', role) != role:
        raise ConfigError(f'--role {role} but DMLC_ROLE={os.environ["DMLC_ROLE"]} in the '
                          'environment; unset DMLC_ROLE (--role sets it)')
    seconds = start_timeout(timeout)
    if role == 'scheduler':
        port = os.environ['DMLC_PS_ROOT_PORT']
        if not port.strip().isdigit():
            raise ConfigError(f'DMLC_PS_ROOT_PORT={port!r}: expected a port number')
        _check_port(int(port))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.pop('DMLC_ROLE', None)       # or the import below would run the server itself
    import mxnet as mx
    os.environ['DMLC_ROLE'] = role
    if seconds <= 0:
        mx.kvstore.KVStoreServer(mx.kv.create('dist')).run()
        return
    quiet = os.environ.get('PS_VERBOSE', '0').strip() in ('', '0')
    if quiet:
        os.environ['PS_VERBOSE'] = '1'
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    deadline = _Deadline(seconds, _late_message(f'this {role}', seconds), original)
    reader = threading.Thread(target=_watch_stderr, args=(read_end, original, deadline, quiet),
                              name='gluonbert-stderr', daemon=True)
    reader.start()
    try:
        mx.kvstore.KVStoreServer(mx.kv.create('dist')).run()
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)      # the pipe's last writer is gone: the reader sees its end
        reader.join(timeout=5)


def _check_port(port):
    """The scheduler's port must be free: ps-lite would abort with "bind failed" and no port
    number when another program listens on it."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as ps-lite binds
        try:
            sock.bind(('', port))
        except OSError as err:
            raise ConfigError(f'DMLC_PS_ROOT_PORT={port}: the scheduler cannot listen on port '
                              f'{port} ({err.strerror}); expected a free port (gluonbert '
                              'launch --port, or omit it to take a free one)') from None


def _watch_stderr(read_end, original, deadline, quiet):
    """Copies the process's standard error to ``original``; ps-lite's start-up line meets the
    deadline. Lines that only ``PS_VERBOSE=1`` made ps-lite print are dropped when ``quiet``."""
    with os.fdopen(read_end, 'rb') as pipe:
        for raw in pipe:
            line = raw.decode('utf-8', 'replace')
            if _CONNECTED.search(line):
                deadline.met()
            if quiet and _VERBOSE_LINE.search(line):
                continue
            try:
                os.write(original, raw)
            except OSError:     # keep draining: a full pipe would block the server
                pass
