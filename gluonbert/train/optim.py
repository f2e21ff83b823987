"""Optimisation for BERT: decoupled-weight-decay Adam (BERT's, without bias correction, and
AdamW's, with it), LAMB, the learning-rate schedule and global-norm gradient clipping.

Weight decay follows the original BERT recipe: every weight matrix and embedding decays,
biases and LayerNorm ``gamma``/``beta`` do not (their ``wd_mult`` is set to 0).
"""
import math
import re

import mxnet as mx
import numpy

from ..errors import ConfigError
from .config import OptimizerConfig

__all__ = ['OptimizerConfig', 'BERTAdamW', 'AdamW', 'create_optimizer',
           'exclude_from_weight_decay', 'no_weight_decay', 'WarmupLinearSchedule', 'clip_global_norm']


@mx.optimizer.register
class BERTAdamW(mx.optimizer.Optimizer):
    """Adam with decoupled weight decay, as in BERT (no bias correction of the moments).

    ``m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr (m / (sqrt(v) + eps) + wd w)``
    with ``g = clip(rescale_grad * grad)``. Registered as ``'bertadamw'``; the same update as
    GluonNLP's ``bertadam``.

    Each parameter is updated by one fused ``adamw_update`` kernel (``mp_adamw_update`` for
    float16 weights with a float32 master copy): faster on CPU than grouping parameters into
    ``multi_adamw_update`` calls as GluonNLP's ``bertadam`` does (``benchmarks/README.md``).
    Global-norm clipping reaches the kernel as a factor of its ``rescale_grad``
    (:meth:`scale_next_update`), so clipping costs no pass over the gradients.

    Parameters
    ----------
    learning_rate : float
    beta1, beta2, epsilon : float
    wd : float
        Decoupled weight decay (times each parameter's ``wd_mult``).
    multi_precision : bool
        float16 weights keep a float32 master copy.
    """

    def __init__(self, learning_rate=1e-4, beta1=0.9, beta2=0.999, epsilon=1e-6, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self._grad_scales = {}    # context -> (1,) NDArray: the next update's clipping factor
        self._rescale = {}        # (context, rescale_grad) -> (1,) NDArray given to the kernel

    def create_state(self, index, weight):
        return (mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype),   # mean
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))   # variance

    def create_state_multi_precision(self, index, weight):
        if self.multi_precision and weight.dtype == numpy.float16:
            master = weight.astype(numpy.float32)
            return self.create_state(index, master), master
        return self.create_state(index, weight)

    def scale_next_update(self, scales):
        """Multiplies the gradients by ``scales[ctx]`` in the next update (global-norm clipping,
        :func:`clip_global_norm`): the factor joins ``rescale_grad`` inside each fused
        ``adamw_update`` instead of a separate pass that rewrites every gradient.

        Parameters
        ----------
        scales : dict of Context to (1,) NDArray
            One factor per device, on that device.
        """
        self._grad_scales = dict(scales)
        self._rescale = {}

    def _rescale_on(self, ctx):
        """``rescale_grad`` times this device's clipping factor, as the (1,) NDArray the fused
        kernel takes; made once per device and update (the kernel wants an array)."""
        key = (ctx, self.rescale_grad)
        if key not in self._rescale:
            array = mx.nd.full((1,), self.rescale_grad, ctx=ctx)
            scale = self._grad_scales.get(ctx)
            self._rescale[key] = array if scale is None else array * scale
        return self._rescale[key]

    def _kwargs(self, index):
        self._update_count(index)
        # lr=1 and eta = the scheduled rate: w -= eta * (m / (sqrt(v) + eps) + wd * w).
        kwargs = {'lr': 1.0, 'eta': self._get_lr(index), 'wd': self._get_wd(index),
                  'beta1': self.beta1, 'beta2': self.beta2, 'epsilon': self.epsilon}
        if self.clip_gradient:
            kwargs['clip_gradient'] = self.clip_gradient
        return kwargs

    def update(self, index, weight, grad, state):
        mean, var = state
        mx.nd.contrib.adamw_update(weight, grad, mean, var, self._rescale_on(weight.context),
                                   out=weight, **self._kwargs(index))

    def update_multi_precision(self, index, weight, grad, state):
        if not (self.multi_precision and weight.dtype == numpy.float16):
            return self.update(index, weight, grad, state)
        (mean, var), master = state
        mx.nd.contrib.mp_adamw_update(weight, grad, mean, var, master,
                                      self._rescale_on(weight.context), out=weight,
                                      **self._kwargs(index))
        return None


@mx.optimizer.register
class AdamW(BERTAdamW):
    """Adam with decoupled weight decay and bias-corrected moments, as ``torch.optim.AdamW``.

    ``w -= lr (m_hat / (sqrt(v_hat) + eps) + wd w)`` with ``m_hat = m / (1 - b1^t)`` and
    ``v_hat = v / (1 - b2^t)``, ``t`` the parameter's update count (1 at the first update).
    Without the correction (:class:`BERTAdamW`) a steady gradient moves a weight by
    ``lr (1 - b1^t) / sqrt(1 - b2^t)``: 3.2 ``lr`` at the first update, 6.5 at the tenth, 3.2
    at the 100th, still 1.3 at the 1000th. A fine-tuning run of a few hundred updates thus runs
    at several times its nominal rate, which on small data sets can push the classifier into
    predicting one class for good (Zhang et al., "Revisiting Few-sample BERT Fine-tuning",
    ICLR 2021; Mosbach et al., "On the Stability of Fine-tuning BERT", ICLR 2021).

    The correction is folded into the arguments of the same fused ``adamw_update`` kernel:
    ``m_hat / (sqrt(v_hat) + eps) = c m / (sqrt(v) + eps')`` with ``c = sqrt(1 - b2^t) /
    (1 - b1^t)`` and ``eps' = eps sqrt(1 - b2^t)``, so this class only changes the kernel's
    ``lr`` and ``epsilon`` per update and inherits everything else (clipping folded into
    ``rescale_grad``, multi-precision) from :class:`BERTAdamW`. ``t`` is MXNet's per-parameter
    update count, which checkpoints save and restore, so a resumed run continues exactly.
    Registered as ``'adamw'``.

    Parameters
    ----------
    learning_rate : float
    beta1, beta2, epsilon : float
    wd : float
        Decoupled weight decay (times each parameter's ``wd_mult``).
    """

    def _kwargs(self, index):
        kwargs = super()._kwargs(index)
        t = self._index_update_count[index]
        root = math.sqrt(1.0 - self.beta2 ** t)
        kwargs['lr'] = root / (1.0 - self.beta1 ** t)
        kwargs['epsilon'] = self.epsilon * root
        return kwargs


def create_optimizer(config):
    """The MXNet optimiser named by ``config.name``, at rate ``config.lr`` (the engine sets
    the schedule's rate before every update).

    Outputs
    -------
    mx.optimizer.Optimizer
    """
    lr = config.lr
    if config.name in ('bertadam', 'adamw'):
        adam = BERTAdamW if config.name == 'bertadam' else AdamW
        return adam(learning_rate=lr, beta1=config.beta1, beta2=config.beta2,
                    epsilon=config.epsilon, wd=config.weight_decay)
    return mx.optimizer.LAMB(learning_rate=lr, beta1=config.beta1, beta2=config.beta2,
                             epsilon=config.epsilon, wd=config.weight_decay)


def no_weight_decay(name):
    """Whether the parameter ``name`` is a bias or a LayerNorm ``gamma``/``beta`` (BERT's recipe
    does not decay them). Takes structural (``encoder.layer_norm.gamma``) and MXNet
    (``bertmodel0_layernorm0_gamma``) names."""
    return re.split(r'[._]', name)[-1] in ('bias', 'gamma', 'beta')


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
        if no_weight_decay(name):
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


def clip_global_norm(params, max_norm, optimizer=None):
    """Scales the gradients so that the global L2 norm of all of them is <= ``max_norm``.

    Call it after ``Trainer.allreduce_grads()``: every device then holds the same reduced
    gradient (summed over all devices and, with a ``dist`` kvstore, all workers), so each
    device computes the global norm of its own copy, without any copy or host
    synchronisation. With a :class:`BERTAdamW` ``optimizer`` the factor is handed to its next
    update (:meth:`BERTAdamW.scale_next_update`), which applies it inside each fused
    ``adamw_update``; otherwise every gradient is multiplied in place. A non-finite norm (fp16
    overflow) makes the update non-finite, which AMP's overflow check then skips.

    Parameters
    ----------
    params : list of gluon.Parameter
        Parameters with gradients (those with ``grad_req == 'null'`` are ignored).
    max_norm : float
    optimizer : mx.optimizer.Optimizer, optional
        The optimizer of the next update.

    Outputs
    -------
    norm : (1,) NDArray
        The global norm before clipping, on the first device.
    """
    params = [p for p in params if p.grad_req != 'null']
    per_device = list(zip(*[p.list_grad() for p in params]))   # device -> tuple of grads
    norms, scales = [], {}
    for grads in per_device:
        sums = mx.nd.multi_sum_sq(*grads, num_arrays=len(grads))
        norm = mx.nd.sqrt(mx.nd.sum(sums)).reshape((1,))
        scale = mx.nd.minimum(max_norm / (norm + 1e-6), mx.nd.ones_like(norm))
        if isinstance(optimizer, BERTAdamW):
            scales[grads[0].context] = scale
        else:
            for g in grads:
                mx.nd.broadcast_mul(g, scale, out=g)
        norms.append(norm)
    if isinstance(optimizer, BERTAdamW):
        optimizer.scale_next_update(scales)
    return norms[0]
