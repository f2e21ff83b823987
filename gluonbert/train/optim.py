"""Optimisation for BERT: decoupled-weight-decay Adam, LAMB, the learning-rate schedule and
global-norm gradient clipping.

Weight decay follows the original BERT recipe: every weight matrix and embedding decays,
biases and LayerNorm ``gamma``/``beta`` do not (their ``wd_mult`` is set to 0).
"""
import math

import mxnet as mx

from ..errors import ConfigError
from .config import OptimizerConfig

__all__ = ['OptimizerConfig', 'BERTAdamW', 'create_optimizer', 'exclude_from_weight_decay',
           'WarmupLinearSchedule', 'clip_global_norm']


@mx.optimizer.register
class BERTAdamW(mx.optimizer.Optimizer):
    """Adam with decoupled weight decay, as in BERT (no bias correction of the moments).

    ``m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr (m / (sqrt(v) + eps) + wd w)``
    with ``g = rescale_grad * grad``. Registered as ``'bertadamw'``. Parameters are updated in
    groups of 16 by one fused ``multi_adamw_update`` kernel per group.

    Parameters
    ----------
    learning_rate : float
    beta1, beta2, epsilon : float
    """

    def __init__(self, learning_rate=1e-4, beta1=0.9, beta2=0.999, epsilon=1e-6, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.aggregate_num = 16   # parameters per fused multi_adamw_update call
        self._rescale = {}        # context -> (1,) NDArray holding rescale_grad

    def create_state(self, index, weight):
        return (mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype),   # mean
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))   # variance

    def _rescale_on(self, ctx):
        value, array = self._rescale.get(ctx, (None, None))
        if value != self.rescale_grad:
            array = mx.nd.full((1,), self.rescale_grad, ctx=ctx)
            self._rescale[ctx] = (self.rescale_grad, array)
        return array

    def update(self, index, weight, grad, state):
        indices, weights, grads, states = index, weight, grad, state
        if not isinstance(index, (tuple, list)):
            indices, weights, grads, states = [index], [weight], [grad], [state]
        self._update_count(indices)
        lrs, wds = self._get_lrs(indices), self._get_wds(indices)
        rescale = self._rescale_on(weights[0].context)
        kwargs = {'beta1': self.beta1, 'beta2': self.beta2, 'epsilon': self.epsilon}
        if self.clip_gradient:
            kwargs['clip_gradient'] = self.clip_gradient
        # eta carries the scheduled rate, lr=1: w -= eta * (m / (sqrt(v) + eps) + wd * w).
        for start in range(0, len(indices), self.aggregate_num):
            part = slice(start, start + self.aggregate_num)
            means, variances = zip(*states[part])
            n = len(weights[part])
            mx.nd.contrib.multi_adamw_update(
                weights[part], grads[part], means, variances, rescale, out=weights[part],
                size=n, lrs=[1.0] * n, wds=wds[part], etas=lrs[part], **kwargs)

    def update_multi_precision(self, index, weight, grad, state):
        self.update(index, weight, grad, state)


def create_optimizer(config, learning_rate=None):
    """The MXNet optimiser named by ``config.name``.

    Parameters
    ----------
    config : OptimizerConfig
    learning_rate : float, optional
        Initial rate (default ``config.lr``; the training loop sets it every step).

    Outputs
    -------
    mx.optimizer.Optimizer
    """
    lr = config.lr if learning_rate is None else learning_rate
    if config.name == 'bertadam':
        return BERTAdamW(learning_rate=lr, beta1=config.beta1, beta2=config.beta2,
                         epsilon=config.epsilon, wd=config.weight_decay)
    return mx.optimizer.LAMB(learning_rate=lr, beta1=config.beta1, beta2=config.beta2,
                             epsilon=config.epsilon, wd=config.weight_decay)


def exclude_from_weight_decay(block):
    """Sets ``wd_mult = 0`` on biases and LayerNorm ``gamma``/``beta`` of ``block``.

    Parameters
    ----------
    block : gluon.Block

    Outputs
    -------
    list of str
        Structural names of the parameters excluded from weight decay.
    """
    excluded = []
    for name, param in block._collect_params_with_prefix().items():
        if name.rsplit('.', 1)[-1] in ('bias', 'gamma', 'beta'):
            param.wd_mult = 0.0
            excluded.append(name)
    return excluded


class WarmupLinearSchedule:
    """Learning rate: linear warm-up from 0 to ``base_lr``, then linear decay to 0.

    Parameters
    ----------
    base_lr : float
        Peak rate.
    total_steps : int
        Number of optimiser updates in the whole run.
    warmup_ratio : float
        Fraction of ``total_steps`` spent warming up.

    Inputs
    ------
    step : int
        Index of the update about to be made, counted from 0.

    Outputs
    -------
    lr : float
    """

    def __init__(self, base_lr, total_steps, warmup_ratio):
        if total_steps < 1:
            raise ConfigError(f'total_steps={total_steps}: expected at least one update')
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup_steps = int(math.ceil(total_steps * warmup_ratio))

    def __call__(self, step):
        done = step + 1
        if done <= self.warmup_steps:
            return self.base_lr * done / self.warmup_steps
        # decays from just below the peak to base_lr / (decay steps) at the last update
        decay_steps = self.total_steps - self.warmup_steps + 1
        return self.base_lr * max(0.0, (self.total_steps - done + 1) / decay_steps)


def clip_global_norm(params, max_norm):
    """Scales every gradient so that the global L2 norm of all of them is <= ``max_norm``.

    Call it after ``Trainer.allreduce_grads()``: every device then holds the same reduced
    gradient (summed over all devices and, with a ``dist`` kvstore, all workers), so each
    device computes the global norm of its own copy and rescales it without any copy or
    host synchronisation. A non-finite norm (fp16 overflow) turns the gradients non-finite,
    which AMP's overflow check then skips.

    Parameters
    ----------
    params : list of gluon.Parameter
        Parameters with gradients (those with ``grad_req == 'null'`` are ignored).
    max_norm : float

    Outputs
    -------
    norm : (1,) NDArray
        The global norm before clipping, on the first device.
    """
    params = [p for p in params if p.grad_req != 'null']
    per_device = list(zip(*[p.list_grad() for p in params]))   # device -> tuple of grads
    norms = []
    for grads in per_device:
        sums = mx.nd.multi_sum_sq(*grads, num_arrays=len(grads))
        norm = mx.nd.sqrt(mx.nd.sum(sums)).reshape((1,))
        scale = mx.nd.minimum(max_norm / (norm + 1e-6), mx.nd.ones_like(norm))
        for g in grads:
            mx.nd.broadcast_mul(g, scale, out=g)
        norms.append(norm)
    return norms[0]
