"""glibc malloc settings that keep large MXNet buffers mapped between training steps.

MXNet 1.9 allocates CPU arrays with plain ``posix_memalign`` and frees them as soon as they
die (no CPU memory pool). With glibc's defaults every buffer over 32 MiB is a fresh ``mmap``
and every free a ``munmap``, and MXNet's engine threads allocate from per-thread arenas that
also fall back to ``mmap`` for large requests. The kernel then zero-fills each page on first
touch: a d2l-sized pretraining step (a 5120 x 20000 MLM score matrix, 410 MB) takes about
200,000 page faults per step, and the vocabulary GEMM runs at half speed.

:func:`tune_allocator` asks glibc for one arena, no ``mmap`` for large blocks and no trimming
of the heap top, so that a freed buffer is reused by the next step without page faults. The
price: memory freed by MXNet stays in the process (resident size stays at its high-water
mark) instead of going back to the operating system.

glibc reads these settings for arenas created after the call, so it only works before MXNet
starts its threads: ``import gluonbert`` calls it before importing MXNet (set
``GLUONBERT_TUNE_MALLOC=0`` to keep glibc's defaults). If MXNet was imported first, set the
environment before Python starts instead::

    export MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647

This module must not import MXNet.
"""
import ctypes
import ctypes.util
import os
import sys

__all__ = ['tune_allocator', 'ALLOCATOR_ENV']

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
