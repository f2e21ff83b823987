"""Speed settings for gluonbert on CPU: environment, hybridization and a fast Adam.

Each lever is measured in ``benchmarks/README.md``.

* :func:`recommended_env` -- OpenMP/BLAS thread counts. OpenMP reads them when MXNet is
  loaded, which ``import gluonbert`` does: set them in the shell,
  ``eval "$(python -m gluonbert.perf --threads 2)"``, or in ``os.environ`` before the first
  ``import mxnet``/``gluonbert``.
* :func:`optimize` -- for training narrow models, LayerNorm with a fast backward pass; for
  inference, MXNet's MKLDNN subgraph fusion; ``static_alloc``/``static_shape`` hybridization.
* :func:`make_trainer` -- a ``gluon.Trainer`` with :class:`FastBERTAdam`, BERT's Adam
  (decoupled weight decay, no bias correction: GluonNLP's ``bertadam``) on MXNet's fastest
  CPU kernels, with no decay on LayerNorm and bias parameters.
"""
import os
import sys

import mxnet as mx
import numpy

__all__ = ['recommended_env', 'optimize', 'make_trainer', 'FastBERTAdam']


def recommended_env(threads=None):
    """Environment variables for fast CPU training and inference.

    Parameters
    ----------
    threads : int or None
        OpenMP threads per operator (default: the number of CPUs). Use the number of physical
        cores: more threads than cores slow MXNet's OpenMP loops down.

    Outputs
    -------
    env : dict of str to str
    """
    threads = threads or os.cpu_count() or 1
    return {
        'OMP_NUM_THREADS': str(threads),
        'MKL_NUM_THREADS': str(threads),
        'OPENBLAS_NUM_THREADS': str(threads),
    }


def _mkldnn_enabled():
    from mxnet.runtime import Features
    return Features().is_enabled('MKLDNN') and os.environ.get('MXNET_MKLDNN_ENABLED', '1') != '0'


def optimize(net, *example_inputs, training=True):
    """Prepares a gluonbert model for fast training or inference and hybridizes it.

    * training: gluonbert ``LayerNorm`` blocks at most
      :data:`~gluonbert.model.layer_norm.FAST_BACKWARD_MAX_WIDTH` wide switch to their
      fast-backward formulation (:mod:`gluonbert.model.layer_norm`), then
      ``hybridize(static_alloc=True, static_shape=True)``.
    * inference: ``LayerNorm`` keeps MXNet's operator (its forward is the faster one). With
      ``example_inputs`` and an MKLDNN build, the graph goes through MXNet's ``MKLDNN``
      subgraph backend (``optimize_for``): dense layers fused with their GELU and the
      attention products replaced by oneDNN kernels, outputs equal to ~1e-6. Those fused
      operators have no gradient: a model optimized with ``training=False`` cannot be trained.
      Otherwise ``hybridize(static_alloc=True, static_shape=True)``.

    Parameters
    ----------
    net : gluon.HybridBlock
        An initialised gluonbert model (``BERTModel``, ``BERTClassifier``...).
    *example_inputs : NDArray or None
        One batch of the model's inputs, as passed to ``net`` (inference: needed for the
        MKLDNN rewrite, which runs ``net`` on them once).
    training : bool
        Whether the model will be trained (its backward pass matters).

    Outputs
    -------
    net : the same block
    """
    from .model.layer_norm import FAST_BACKWARD_MAX_WIDTH, LayerNorm

    def set_layer_norm(block):
        if isinstance(block, LayerNorm):
            block.fast_backward = training and block.channels <= FAST_BACKWARD_MAX_WIDTH
    net.apply(set_layer_norm)
    if not training and example_inputs and _mkldnn_enabled():
        net.optimize_for(*example_inputs, backend='MKLDNN', static_alloc=True,
                         static_shape=True)
    else:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


@mx.optimizer.register
class FastBERTAdam(mx.optimizer.Optimizer):
    """BERT's Adam (GluonNLP's ``bertadam``) on MXNet's fastest CPU kernels.

    ``m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr (m / (sqrt(v) + eps) + wd w)``
    with ``g = clip(rescale_grad * grad)``: no bias correction, decoupled weight decay.
    Registered as ``'fastbertadam'``.

    Each parameter is updated by ``w *= 1 - lr wd`` (skipped when its ``wd`` is 0) then
    ``adam_update`` with ``wd=0`` -- the same update. On one CPU thread these two kernels
    take about 0.45 s per BERT-base step (110M parameters); ``multi_adamw_update``, which
    GluonNLP's ``bertadam`` aggregates into, takes 2.1 s and ``adamw_update`` 0.54 s.

    Parameters
    ----------
    learning_rate, beta1, beta2, epsilon : float
    wd : float
        Decoupled weight decay (times each parameter's ``wd_mult``).
    multi_precision : bool
        float16 weights keep a float32 master copy (updated with ``mp_adamw_update``).
    """

    def __init__(self, learning_rate=1e-4, beta1=0.9, beta2=0.999, epsilon=1e-6, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self._rescale_nd = {}

    def create_state(self, index, weight):
        return (mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def _kwargs(self):
        kwargs = {'beta1': self.beta1, 'beta2': self.beta2, 'epsilon': self.epsilon}
        if self.clip_gradient:
            kwargs['clip_gradient'] = self.clip_gradient
        return kwargs

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        if wd:
            mx.nd._internal._mul_scalar(weight, scalar=1.0 - lr * wd, out=weight)
        mean, var = state
        mx.nd.adam_update(weight, grad, mean, var, out=weight, lr=lr, wd=0.0,
                          rescale_grad=self.rescale_grad, **self._kwargs())

    def update_multi_precision(self, index, weight, grad, state):
        if not (self.multi_precision and weight.dtype != numpy.float32):
            return self.update(index, weight, grad, state)
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        (mean, var), master = state
        ctx = weight.context
        if self._rescale_nd.get(ctx, (None,))[0] != self.rescale_grad:
            self._rescale_nd[ctx] = (self.rescale_grad,
                                     mx.nd.full((1,), self.rescale_grad, ctx=ctx))
        mx.nd.contrib.mp_adamw_update(weight, grad, mean, var, master,
                                      self._rescale_nd[ctx][1], out=weight, lr=1.0, eta=lr,
                                      wd=wd, **self._kwargs())
        return None


def _no_decay(name):
    """Biases and LayerNorm gamma/beta are not decayed (BERT's recipe)."""
    return name.endswith(('bias', 'beta', 'gamma'))


def make_trainer(params, learning_rate=1e-4, weight_decay=0.01, beta1=0.9, beta2=0.999,
                 epsilon=1e-6, kvstore='device'):
    """A ``gluon.Trainer`` running :class:`FastBERTAdam`.

    Parameters
    ----------
    params : ParameterDict
        ``net.collect_params()``.
    learning_rate, weight_decay, beta1, beta2, epsilon : float
        Adam hyper-parameters. Weight decay is not applied to biases and LayerNorm
        parameters (their ``wd_mult`` is set to 0), as in BERT.
    kvstore : str
        Passed to ``gluon.Trainer``.

    Outputs
    -------
    trainer : gluon.Trainer
    """
    for name, param in params.items():
        if _no_decay(name):
            param.wd_mult = 0.0
    optimizer = FastBERTAdam(learning_rate=learning_rate, wd=weight_decay, beta1=beta1,
                             beta2=beta2, epsilon=epsilon)
    return mx.gluon.Trainer(params, optimizer, kvstore=kvstore)


def _main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog='python -m gluonbert.perf',
        description='Print shell exports of the recommended MXNet/OpenMP environment.')
    parser.add_argument('--threads', type=int, default=None,
                        help='threads per operator (default: number of CPUs)')
    args = parser.parse_args(argv)
    for key, value in recommended_env(args.threads).items():
        print(f'export {key}={value}')
    return 0


if __name__ == '__main__':
    sys.exit(_main())
