"""Hybridizing a gluonbert model for fast training or inference (:func:`optimize`)."""
import os

__all__ = ['optimize']


def _mkldnn_enabled():
    from mxnet.runtime import Features
    return Features().is_enabled('MKLDNN') and os.environ.get('MXNET_MKLDNN_ENABLED', '1') != '0'


def optimize(net, *example_inputs, training=True, kernels='auto', static_shape=True):
    """Prepares a gluonbert model for fast training or inference and hybridizes it.

    * On CPU (every parameter on a CPU context), as ``kernels`` says: gluonbert's
      ``LayerNorm``, ``ResidualLayerNorm``, ``Dropout`` and ``SelfAttention`` blocks switch to
      gluonbert's CPU kernels (:mod:`gluonbert.kernels`), then
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
    from .. import kernels as cpu_kernels
    from .attention import SelfAttention
    from .dropout import Dropout
    from .layer_norm import LayerNorm

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
