"""The machine gluonbert runs on: CPU model and instruction-set flags, cores and threads,
and glibc's allocator settings. The one place that reads ``/proc/cpuinfo``.

Nothing here runs at import: importing gluonbert changes no process-wide setting. The
``gluonbert`` command applies :func:`default_threads` and :func:`tune_allocator` itself, before
MXNet is loaded, and says so in ``gluonbert -h``; a script does the same by calling them first
(or with ``eval "$(python -m gluonbert.platform --threads 2)"`` in the shell).

Allocator. MXNet 1.9 allocates CPU arrays with plain ``posix_memalign`` and frees them as soon
as they die (no CPU memory pool). With glibc's defaults every buffer over 32 MiB is a fresh
``mmap`` and every free a ``munmap``, and MXNet's engine threads allocate from per-thread
arenas that also fall back to ``mmap`` for large requests. The kernel then zero-fills each page
on first touch, every step, for every large buffer (the masked-LM scores, their gradient). :func:`tune_allocator` asks glibc for one arena, no
``mmap`` for large blocks and no trimming of the heap top, so that a freed buffer is reused by
the next step without page faults. The price: memory freed by MXNet stays in the process
instead of going back to the operating system. glibc reads these settings for arenas created
after the call, so it only helps before MXNet starts its threads; otherwise set
:data:`ALLOCATOR_ENV` in the environment before Python starts.

This module must not import MXNet.
"""
import ctypes
import ctypes.util
import dataclasses
import os
import sys

__all__ = ['CPUINFO', 'ISA_FLAGS', 'CPUInfo', 'cpu_info', 'physical_cores', 'default_threads',
           'recommended_env', 'tune_allocator', 'ALLOCATOR_ENV', 'AMXStatus', 'enable_amx',
           'amx_status', 'raise_on_signals']

#: Where the CPU is described (a module attribute so that tests can point it elsewhere).
CPUINFO = '/proc/cpuinfo'
#: Instruction-set flags that decide which kernels are fast (recorded with every benchmark).
ISA_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx_vnni',
             'avx512_bf16', 'amx_tile', 'amx_bf16', 'amx_int8')


@dataclasses.dataclass(frozen=True)
class CPUInfo:
    """What ``/proc/cpuinfo`` says of this machine.

    Attributes
    ----------
    model : str
        Model name of the first processor (``'unknown'`` when the file cannot be read).
    flags : frozenset of str
        Its instruction-set flags (empty when unknown).
    cores : frozenset of (str, str)
        ``(physical id, core id)`` of every processor this process may run on (hyper-threads
        of one core count once); empty when unknown.
    """
    model: str
    flags: frozenset
    cores: frozenset

    def has(self, *flags):
        """Whether every flag of ``flags`` is present."""
        return all(f in self.flags for f in flags)

    def isa(self):
        """``{flag: bool}`` for the flags of :data:`ISA_FLAGS`."""
        return {flag: flag in self.flags for flag in ISA_FLAGS}


def _affinity():
    try:
        return os.sched_getaffinity(0)
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def cpu_info(path=None):
    """Reads :data:`CPUINFO` (or ``path``).

    Outputs
    -------
    CPUInfo
    """
    allowed = _affinity()
    try:
        with open(path or CPUINFO, encoding='utf-8', errors='replace') as f:
            blocks = f.read().split('\n\n')
    except OSError:
        return CPUInfo('unknown', frozenset(), frozenset())
    model, flags, cores = 'unknown', frozenset(), set()
    for block in blocks:
        fields = dict((key.strip(), value.strip()) for key, _, value in
                      (line.partition(':') for line in block.splitlines()))
        if not fields.get('processor', '').isdigit():
            continue
        if model == 'unknown' and 'model name' in fields:
            model = fields['model name']
        if not flags and 'flags' in fields:
            flags = frozenset(fields['flags'].split())
        if int(fields['processor']) in allowed:
            cores.add((fields.get('physical id'), fields.get('core id', fields['processor'])))
    return CPUInfo(model, flags, frozenset(cores))


def physical_cores(path=None):
    """Physical cores this process may run on: the CPUs of its affinity mask, hyper-threads of
    one core counted once. Without ``/proc/cpuinfo``, the number of CPUs in the mask.

    Outputs
    -------
    cores : int
        At least 1.
    """
    return len(cpu_info(path).cores) or max(len(_affinity()), 1)


def default_threads(environ=None, workers=1):
    """Sets ``OMP_NUM_THREADS`` in ``environ`` (default ``os.environ``) when it is not set:
    the physical cores divided among ``workers`` processes of one host.

    MXNet 1.9 reads it when it is loaded; when it is unset MXNet takes half the CPU count
    (on the assumption of two hyper-threads per core), which on a machine of 2 vCPUs without
    hyper-threads runs every operator on one thread, at half speed. The ``gluonbert`` command
    calls this before MXNet is loaded, and ``gluonbert launch`` for the workers it starts.

    Outputs
    -------
    threads : str
        The value in ``environ`` afterwards (the user's own when it was set).
    """
    environ = os.environ if environ is None else environ
    if 'OMP_NUM_THREADS' not in environ:
        environ['OMP_NUM_THREADS'] = str(max(1, physical_cores() // max(workers, 1)))
    return environ['OMP_NUM_THREADS']


def recommended_env(threads=None, allocator=False):
    """Environment variables for fast CPU training and inference.

    Parameters
    ----------
    threads : int or None
        OpenMP threads per operator (default: :func:`physical_cores`): more threads than
        cores slow MXNet's OpenMP loops down.
    allocator : bool
        Also glibc's malloc settings of :mod:`gluonbert.platform`, for processes that import
        MXNet before gluonbert (``import gluonbert`` applies them itself otherwise).

    Outputs
    -------
    env : dict of str to str
    """
    threads = threads or physical_cores()
    env = {
        'OMP_NUM_THREADS': str(threads),
        'MKL_NUM_THREADS': str(threads),
        'OPENBLAS_NUM_THREADS': str(threads),
    }
    if allocator:
        env.update(ALLOCATOR_ENV)
    return env


#: The same settings as environment variables read by glibc at process start.
ALLOCATOR_ENV = {'MALLOC_ARENA_MAX': '1', 'MALLOC_MMAP_MAX_': '0',
                 'MALLOC_TRIM_THRESHOLD_': str(2 ** 31 - 1)}

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def tune_allocator(force=False):
    """Applies :data:`ALLOCATOR_ENV` to the running process with ``mallopt``.

    Parameters
    ----------
    force : bool
        Apply even if MXNet is already imported (its threads then keep their own arenas, and
        the settings only partly help).

    Outputs
    -------
    applied : bool
        False when not on glibc, when disabled by ``GLUONBERT_TUNE_MALLOC=0``, or when MXNet
        was already imported (and ``force`` is False).
    """
    if os.environ.get('GLUONBERT_TUNE_MALLOC', '1') == '0':
        return False
    if 'mxnet' in sys.modules and not force:
        return False
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    return all(mallopt(option, value) == 1 for option, value in settings)


@dataclasses.dataclass(frozen=True)
class AMXStatus:
    """Whether oneDNN may use the CPU's AMX tiles, and why (one line for the log)."""
    enabled: bool
    reason: str

    def __str__(self):
        return f'AMX {"on" if self.enabled else "off"}: {self.reason}'


#: x86-64 Linux: ``SYS_arch_prctl``, ``ARCH_REQ_XCOMP_PERM``, ``XFEATURE_XTILEDATA``.
_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA = 158, 0x1023, 18


def _request_tile_state():
    """Asks Linux for the AMX tile state of this process; True when granted."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def enable_amx(environ=None, info=None, request=_request_tile_state):
    """Lets MXNet's oneDNN use the CPU's AMX tiles (bfloat16 and int8 matrix products), when the
    CPU has them and Linux grants their state; otherwise changes nothing.

    oneDNN 2.4.4 (MXNet 1.9.1) has AMX kernels but caps itself below them unless
    ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX`` is set before its first primitive; and Linux (5.16
    and later) gives the tile state only to a process that asks for it with
    ``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``, which oneDNN 2.4.4 does not do:
    an AMX instruction without it dies with SIGILL. So the permission is asked for first, and
    the limit is raised only when it is granted. Call it before MXNet runs anything (the
    ``gluonbert`` command does). ``GLUONBERT_AMX=0`` turns it off; a ``DNNL_MAX_CPU_ISA``
    the user set is left alone.

    Parameters
    ----------
    environ : dict, optional
        Default ``os.environ``.
    info : CPUInfo, optional
        Default :func:`cpu_info`.
    request : callable
        Asks for the tile state, True when granted (tests pass a stand-in).

    Outputs
    -------
    AMXStatus
    """
    environ = os.environ if environ is None else environ
    if environ.get('GLUONBERT_AMX', '1') == '0':
        return AMXStatus(False, 'turned off by GLUONBERT_AMX=0')
    if 'DNNL_MAX_CPU_ISA' in environ:
        return AMXStatus(environ['DNNL_MAX_CPU_ISA'].upper() == 'AVX512_CORE_AMX',
                         f'DNNL_MAX_CPU_ISA={environ["DNNL_MAX_CPU_ISA"]} set by the user')
    info = info or cpu_info()
    if not info.has('amx_tile', 'amx_bf16', 'amx_int8'):
        return AMXStatus(False, f'this CPU ({info.model}) has no AMX (amx_tile, amx_bf16, '
                                'amx_int8)')
    if not request():
        return AMXStatus(False, 'Linux refused this process the AMX tile state '
                                '(arch_prctl ARCH_REQ_XCOMP_PERM; kernel older than 5.16?)')
    environ['DNNL_MAX_CPU_ISA'] = 'AVX512_CORE_AMX'
    return AMXStatus(True, f'{info.model}: oneDNN may use the AMX tiles')


def amx_status(environ=None):
    """Whether this process lets oneDNN use AMX, without changing anything (for logs)."""
    environ = os.environ if environ is None else environ
    return enable_amx(environ=dict(environ), request=lambda: True) if 'DNNL_MAX_CPU_ISA' not \
        in environ else AMXStatus(environ['DNNL_MAX_CPU_ISA'].upper() == 'AVX512_CORE_AMX',
                                  f'DNNL_MAX_CPU_ISA={environ["DNNL_MAX_CPU_ISA"]}')


def raise_on_signals():
    """SIGINT and SIGTERM raise :class:`~gluonbert.errors.Interrupted` in the main thread.

    What the ``gluonbert`` command applies to itself: a signal then stops whatever stage is
    running (data preparation, conversion, evaluation) within moments, the stage's cleanup runs
    (temporary files are removed, a run directory that a failed start created is taken back),
    and the command ends with 130 / 143. Python's default is weaker: SIGTERM ends the process
    without any cleanup, and a process started in the background by a shell ignores SIGINT.
    The training loop replaces the handlers for a while with its own (finish the update, write
    a checkpoint). A second signal while the first is being handled ends the process at once.
    Call it from the main thread.
    """
    import signal

    def handler(signum, frame):
        from .errors import Interrupted
        for sig in (signal.SIGINT, signal.SIGTERM):     # a second signal: the default action
            signal.signal(sig, signal.SIG_DFL)
        raise Interrupted(f'stopped by {signal.Signals(signum).name}', signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return handler


def _main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog='python -m gluonbert.platform',
        description='Print shell exports of the recommended MXNet/OpenMP environment.')
    parser.add_argument('--threads', type=int, default=None,
                        help='threads per operator (default: the physical cores)')
    args = parser.parse_args(argv)
    for key, value in recommended_env(args.threads, allocator=True).items():
        print(f'export {key}={value}')
    return 0


if __name__ == '__main__':
    sys.exit(_main())
