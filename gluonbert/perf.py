"""Speed settings for gluonbert on CPU: threads, gluonbert's kernels and hybridization.

Each lever is measured in ``benchmarks/README.md``.

* :func:`recommended_env` -- OpenMP/BLAS thread counts. OpenMP reads them when MXNet is
  loaded (the ``gluonbert`` command sets ``OMP_NUM_THREADS`` itself when it is unset,
  :func:`default_threads`): set them in the shell,
  ``eval "$(python -m gluonbert.perf --threads 2)"``, or in ``os.environ`` before the first
  ``import mxnet``/``gluonbert``.
* :func:`optimize` -- on CPU, gluonbert's own kernels (LayerNorm, dropout, attention) for
  training and for inference; elsewhere MXNet's operators (for inference with its MKLDNN
  subgraph fusion); ``static_alloc``/``static_shape`` hybridization.
  The training engine (:mod:`gluonbert.train.engine`) hybridizes every task's model with it.
* The one ``Trainer`` factory is the engine's :func:`~gluonbert.train.engine.make_trainer`.
* glibc malloc settings (:mod:`gluonbert.allocator`), applied by ``import gluonbert``.
"""
import os
import sys

from .allocator import ALLOCATOR_ENV

__all__ = ['recommended_env', 'optimize', 'physical_cores', 'default_threads']


def physical_cores(cpuinfo='/proc/cpuinfo'):
    """Physical cores this process may run on.

    The CPUs of the process's affinity mask, counted once per (``physical id``, ``core id``)
    pair of ``cpuinfo``: hyper-threads of one core count once. Without that file (not
    Linux), the number of CPUs in the mask.

    Outputs
    -------
    cores : int
        At least 1.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        allowed = set(range(os.cpu_count() or 1))
    try:
        with open(cpuinfo, encoding='utf-8') as f:
            blocks = f.read().split('\n\n')
    except OSError:
        return max(len(allowed), 1)
    cores = set()
    for block in blocks:
        fields = dict((key.strip(), value.strip()) for key, _, value in
                      (line.partition(':') for line in block.splitlines()))
        if fields.get('processor', '').isdigit() and int(fields['processor']) in allowed:
            cores.add((fields.get('physical id'), fields.get('core id', fields['processor'])))
    return len(cores) or max(len(allowed), 1)


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
        Also glibc's malloc settings of :mod:`gluonbert.allocator`, for processes that import
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


def _mkldnn_enabled():
    from mxnet.runtime import Features
    return Features().is_enabled('MKLDNN') and os.environ.get('MXNET_MKLDNN_ENABLED', '1') != '0'


def optimize(net, *example_inputs, training=True, kernels='auto', static_shape=True):
    """Prepares a gluonbert model for fast training or inference and hybridizes it.

    * On CPU (every parameter on a CPU context), as ``kernels`` says: gluonbert's
      ``LayerNorm``, ``ResidualLayerNorm``, ``Dropout`` and ``SelfAttention`` blocks switch to
      gluonbert's CPU kernels (:mod:`gluonbert.model.cpu_kernels`), then
      ``hybridize(static_alloc=True, static_shape=...)``. With ``training=False`` the attention
      runs the forward-only kernel (it skips padding queries as well as padding keys and has
      no gradient: a model optimized for inference cannot be trained; optimize it again with
      ``training=True``).
    * Without the kernels (``kernels=False``, GPU, no compiler), MXNet's operators; for
      inference with ``example_inputs`` and an MKLDNN build, the graph goes through MXNet's
      ``MKLDNN`` subgraph backend (``optimize_for``: dense layers fused with their GELU, the
      attention products replaced by oneDNN kernels, outputs equal to ~1e-6; no gradient
      either).

    Exports (``export``, ``gluonbert quantize``) hold MXNet's operators only: they are built
    from a freshly loaded model, not from one optimized here.

    Parameters
    ----------
    net : gluon.HybridBlock
        An initialised gluonbert model (``BERTModel``, ``BERTClassifier``...).
    *example_inputs : NDArray or None
        One batch of the model's inputs, as passed to ``net`` (inference without the kernels:
        needed for the MKLDNN rewrite, which runs ``net`` on them once).
    training : bool
        Whether the model will be trained (its backward pass matters).
    kernels : 'auto' or bool
        ``'auto'``: gluonbert's CPU kernels when every parameter lives on a CPU and the
        kernels are available (built and loaded on first use); ``True``: the same but an
        error when they are not available; ``False``: MXNet's operators everywhere.
    static_shape : bool
        ``hybridize(static_shape=...)``: True when every batch has the same shape (the
        benchmarks); False when shapes change (a partial last batch, bucketing), where MXNet
        1.9 re-plans static memory on each change.

    Outputs
    -------
    net : the same block
    """
    from .model import cpu_kernels
    from .model.attention import SelfAttention
    from .model.dropout import Dropout
    from .model.layer_norm import LayerNorm

    if kernels not in ('auto', True, False):
        raise ValueError(f"kernels must be 'auto', True or False, not {kernels!r}")
    use_kernels = False
    if kernels:
        on_cpu = all(ctx.device_type == 'cpu'
                     for p in net.collect_params().values() for ctx in p.list_ctx())
        use_kernels = on_cpu and cpu_kernels.available()
        if kernels is True and not use_kernels:
            raise RuntimeError('gluonbert CPU kernels requested but not available '
                               f'(parameters on CPU: {on_cpu})')

    def set_kernel(block):
        if isinstance(block, (LayerNorm, Dropout, SelfAttention)):
            block.kernel = use_kernels
        if isinstance(block, SelfAttention):
            block.inference = not training
    net.apply(set_kernel)
    if not training and not use_kernels and example_inputs and _mkldnn_enabled():
        net.optimize_for(*example_inputs, backend='MKLDNN', static_alloc=True,
                         static_shape=static_shape)
    else:
        net.hybridize(static_alloc=True, static_shape=static_shape)
    return net


def _main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog='python -m gluonbert.perf',
        description='Print shell exports of the recommended MXNet/OpenMP environment.')
    parser.add_argument('--threads', type=int, default=None,
                        help='threads per operator (default: number of CPUs)')
    args = parser.parse_args(argv)
    for key, value in recommended_env(args.threads, allocator=True).items():
        print(f'export {key}={value}')
    return 0


if __name__ == '__main__':
    sys.exit(_main())
