"""gluonbert's CPU kernels: LayerNorm, residual-dropout-LayerNorm, dropout and attention.

MXNet 1.9.1 spends a large part of a BERT training step on CPU in places that are not the
dense layers: ``LayerNorm``'s backward pass (ten generic broadcast/reduce kernels),
``Dropout`` (one ``std::mt19937`` draw per value) and the attention products of many small
heads. ``cpu_kernels.cc`` holds replacements,
registered as MXNet operators through MXNet's custom-operator library interface
(``mx.library.load``):

* ``gluonbert_layer_norm`` -- LayerNorm over the last axis, forward and backward in one pass;
* ``gluonbert_add_dropout_layer_norm`` -- ``LayerNorm(residual + Dropout(x))``, the end of
  every Transformer sub-layer, with a 1-byte dropout mask;
* ``gluonbert_dropout`` -- dropout with a counter-based mask;
* ``gluonbert_self_attention`` -- scores, softmax, dropout and context of every head in one
  pass per (sequence, head);
* ``gluonbert_self_attention_inference`` -- the same without dropout or gradient, for
  inference: padding queries skipped as well as padding keys, no dropout mask written.

The library is compiled on first use on the machine that runs it (``-O3 -march=native``, with
the ``lib_api`` files that the MXNet wheel ships) and cached under ``$GLUONBERT_CACHE``
(default ``~/.cache/gluonbert``), keyed by the source, the MXNet build, the compiler and its flags,
and the CPU's flags. Without a C++ compiler, or with ``GLUONBERT_KERNELS=0``, :func:`available` is
False and the blocks keep MXNet's own operators (same results, slower training).
:func:`gluonbert.model.optimize.optimize` switches the blocks to the kernels on CPU, for training (the
engine) and for inference (``predict``, the pipelines).
"""
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

__all__ = ['available', 'library_path', 'SOURCE', 'FLAGS']

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

_state = {'loaded': None}


def _mxnet_dir():
    import mxnet
    return Path(mxnet.__file__).parent


def _cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return line
    except OSError:
        pass
    return platform.processor()


def _compiler():
    return os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')


def library_path():
    """Where the compiled library for this machine, MXNet build and source is cached.

    Outputs
    -------
    path : pathlib.Path or None
        None when no C++ compiler is found.
    """
    compiler = _compiler()
    if compiler is None:
        return None
    mx_dir = _mxnet_dir()
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), (mx_dir / 'include/mxnet/lib_api.h').read_bytes(),
                 (mx_dir / 'src/lib_api.cc').read_bytes(), compiler.encode(),
                 ' '.join(FLAGS).encode(), _cpu_flags().encode()):
        key.update(hashlib.sha256(part).digest())
    cache = Path(os.environ.get('GLUONBERT_CACHE') or Path.home() / '.cache' / 'gluonbert')
    return cache / 'kernels' / f'libgluonbert_kernels-{key.hexdigest()[:16]}.so'


def _build(target):
    mx_dir = _mxnet_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        command = [_compiler(), *FLAGS, f'-I{mx_dir / "include"}', str(SOURCE),
                   str(mx_dir / 'src/lib_api.cc'), '-o', str(partial)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f'{" ".join(command)} failed:\n{result.stderr[-2000:]}')
        os.replace(partial, target)   # atomic: concurrent builders each rename a whole file


def available():
    """Whether the kernels are loaded into MXNet (building them on first use).

    Outputs
    -------
    ok : bool
        False with ``GLUONBERT_KERNELS=0``, without a C++ compiler, or when building or
        loading fails (a warning says why, once per process).
    """
    if _state['loaded'] is None:
        _state['loaded'] = _load()
    return _state['loaded']


def _load():
    if os.environ.get('GLUONBERT_KERNELS', '1') == '0':
        return False
    path = library_path()
    if path is None:
        warnings.warn('gluonbert: no C++ compiler (g++ or $CXX) found; training and '
                      "inference use MXNet's slower operators")
        return False
    try:
        if not path.exists():
            _build(path)
        import mxnet as mx
        mx.library.load(str(path), verbose=False)
    except Exception as err:   # a failed build, a missing file, MXNetError from the loader
        warnings.warn(f'gluonbert: CPU kernels unavailable ({err}); training and '
                      "inference use MXNet's slower operators")
        return False
    return True
