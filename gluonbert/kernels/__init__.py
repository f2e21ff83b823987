"""gluonbert's CPU kernels: LayerNorm, residual-dropout-LayerNorm, dropout, attention and the
masked-LM cross-entropy, as MXNet operators.

MXNet 1.9.1 spends a large part of a BERT training step on CPU in places that are not the
dense layers: ``LayerNorm``'s backward pass (ten generic broadcast/reduce kernels),
``Dropout`` (one ``std::mt19937`` draw per value) and the attention products of many small
heads. ``cpu_kernels.cc`` holds replacements, registered as MXNet operators through MXNet's
custom-operator library interface (``mx.library.load``):

* ``gluonbert_layer_norm`` -- LayerNorm over the last axis, forward and backward in one pass;
* ``gluonbert_add_dropout_layer_norm`` -- ``LayerNorm(residual + Dropout(x))``, the end of
  every Transformer sub-layer, with a 1-byte dropout mask;
* ``gluonbert_dropout`` -- dropout with a counter-based mask;
* ``gluonbert_self_attention`` -- scores, softmax, dropout and context of every head in one
  pass per (sequence, head);
* ``gluonbert_self_attention_inference`` -- the same without dropout or gradient, for
  inference: padding queries skipped as well as padding keys, no dropout mask written;
* ``gluonbert_softmax_ce`` -- the masked-LM softmax cross-entropy and each row's argmax.

The blocks that can use them (:class:`~gluonbert.model.layer_norm.LayerNorm`,
:class:`~gluonbert.model.dropout.Dropout`, :class:`~gluonbert.model.attention.SelfAttention`
and the models built from them) ask for them at construction (``kernels=True``) through
:func:`load`. The library is compiled on first use on the machine that runs it (``-O3
-march=native``, with the ``lib_api`` files that the MXNet wheel ships) and cached under
``$GLUONBERT_CACHE`` (default ``~/.cache/gluonbert``), keyed by the source, the MXNet headers,
the compiler, its version and flags, and the CPU's flags. Concurrent processes (``gluonbert
launch -n 4``) build it once, under a file lock. Any failure (``GLUONBERT_KERNELS=0``, no
compiler, MXNet without its C++ headers, an unwritable cache, a failed or timed-out build)
falls back to MXNet's operators -- same results, slower -- with one line that says why.
"""
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ['load', 'available', 'library_path', 'KernelsUnavailable', 'SOURCE', 'FLAGS']

#: The C++ source of the kernels.
SOURCE = Path(__file__).with_name('cpu_kernels.cc')
#: Compiler flags (-fno-math-errno lets the compiler vectorise expf through glibc's libmvec).
#: ``-Wl,-Bsymbolic`` binds the library's own copy of MXNet's ``lib_api`` classes to itself:
#: libmxnet.so exports a differently laid out build of the same symbols (``CustomOp::CustomOp``,
#: ``CustomStatefulOp``'s vtable), and once a library linked to libmxnet.so is loaded with
#: RTLD_GLOBAL (Horovod's ``mpi_lib``) the dynamic linker would otherwise bind ours to them:
#: the ops' registration then divides by a zero bucket count (SIGFPE).
FLAGS = ('-O3', '-march=native', '-fno-math-errno', '-fopenmp', '-shared', '-fPIC', '-std=c++17',
         '-Wl,-Bsymbolic')
#: Seconds a build may take (``GLUONBERT_KERNELS_BUILD_TIMEOUT`` overrides it).
BUILD_TIMEOUT = 300.0

_state = {'loaded': None}


class KernelsUnavailable(RuntimeError):
    """Why the kernels cannot be used on this machine (gluonbert then uses MXNet's operators)."""


def _mxnet_dir():
    import mxnet
    return Path(mxnet.__file__).parent


def _compiler():
    compiler = os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')
    if compiler is None:
        raise KernelsUnavailable('no C++ compiler (g++, c++ or $CXX) found')
    return compiler


def _compiler_version(compiler):
    try:
        done = subprocess.run([compiler, '--version'], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise KernelsUnavailable(f'C++ compiler {compiler} does not run ({err})') from None
    if done.returncode != 0:
        raise KernelsUnavailable(f'{compiler} --version failed: {done.stderr.strip()[-200:]}')
    return done.stdout


def _headers():
    """The MXNet files the library is compiled against (its C++ extension interface)."""
    mx_dir = _mxnet_dir()
    files = (mx_dir / 'include' / 'mxnet' / 'lib_api.h', mx_dir / 'src' / 'lib_api.cc')
    for path in files:
        if not path.is_file():
            raise KernelsUnavailable(f'{path}: missing; expected an MXNet build that ships its '
                                     'C++ extension headers (the mxnet 1.9.1 wheel does)')
    return files


def library_path():
    """Where the compiled library for this machine, MXNet build, compiler and source is cached.

    Outputs
    -------
    path : pathlib.Path

    Raises
    ------
    KernelsUnavailable
        No working compiler, or MXNet without its headers.
    """
    from ..platform import cpu_info
    compiler = _compiler()
    key = hashlib.sha256()
    parts = [SOURCE.read_bytes(), *(path.read_bytes() for path in _headers()),
             compiler.encode(), _compiler_version(compiler).encode(), ' '.join(FLAGS).encode(),
             ' '.join(sorted(cpu_info().flags)).encode()]
    for part in parts:
        key.update(hashlib.sha256(part).digest())
    cache = Path(os.environ.get('GLUONBERT_CACHE') or Path.home() / '.cache' / 'gluonbert')
    return cache / 'kernels' / f'libgluonbert_kernels-{key.hexdigest()[:16]}.so'


@contextlib.contextmanager
def _lock(path):
    """An exclusive lock on ``path`` shared by every process of this machine."""
    with open(path, 'a') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target):
    """Compiles the library into ``target`` unless another process did while we waited."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KernelsUnavailable(f'cache directory {target.parent} cannot be created ({err}); '
                                 'set GLUONBERT_CACHE to a writable directory') from None
    timeout = float(os.environ.get('GLUONBERT_KERNELS_BUILD_TIMEOUT', BUILD_TIMEOUT))
    header, source = _headers()
    try:
        with _lock(target.with_name(target.name + '.lock')):
            if target.exists():
                return
            print(f'gluonbert: compiling the CPU kernels for this machine into {target} (once, '
                  'about 10 s)...', file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                partial = Path(tmp) / target.name
                command = [_compiler(), *FLAGS, f'-I{header.parent.parent}', str(SOURCE),
                           str(source), '-o', str(partial)]
                try:
                    done = subprocess.run(command, capture_output=True, text=True,
                                          timeout=timeout)
                except subprocess.TimeoutExpired:
                    raise KernelsUnavailable(f'building took more than {timeout:.0f} s (set '
                                             'GLUONBERT_KERNELS_BUILD_TIMEOUT to allow more)'
                                             ) from None
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ['no output'])[-1]
                    raise KernelsUnavailable(f'{command[0]} failed: {last}')
                os.replace(partial, target)
    except OSError as err:
        raise KernelsUnavailable(f'cache directory {target.parent} is not writable ({err}); '
                                 'set GLUONBERT_CACHE to a writable directory') from None


def load():
    """Builds (once per machine) and loads the kernels into MXNet.

    Outputs
    -------
    ok : bool
        True when the operators are registered in this process. False with
        ``GLUONBERT_KERNELS=0``, or after any failure, which one line on stderr names (once
        per process).
    """
    if _state['loaded'] is None:
        _state['loaded'] = _load()
    return _state['loaded']


#: The name the blocks and older code use.
available = load


def _load():
    if os.environ.get('GLUONBERT_KERNELS', '1') == '0':
        return False
    try:
        path = library_path()
        if not path.exists():
            _build(path)
        import mxnet as mx
        try:
            mx.library.load(str(path), verbose=False)
        except Exception as err:        # MXNetError from the loader: a bad or foreign file
            raise KernelsUnavailable(f'{path} does not load ({str(err).splitlines()[0]}); '
                                     'delete it to rebuild') from None
    except (KernelsUnavailable, OSError) as err:
        print(f'gluonbert: CPU kernels unavailable: {err}; using MXNet\'s operators (same '
              'results, slower)', file=sys.stderr, flush=True)
        return False
    return True
