"""The data-parallel training step shared by pretraining and fine-tuning.

One optimiser update is::

    for each of `accumulate` micro-batches:
        shards = split_and_load(batch, contexts, even_split=False)
        with autograd.record():                      # one recording scope for all shards
            losses = [loss_fn(shard) for shard in shards]
        autograd.backward(losses)                    # gradients add up (grad_req='add')
    trainer.allreduce_grads()                        # sum over devices (and workers)
    clip_global_norm(...)                            # same norm on every device
    trainer.update(1)

Losses must already be normalised by *global* quantities (the whole batch's number of
sentences or masked tokens, computed on the host before splitting), so that the sum of the
shards' gradients equals the gradient of the un-split batch: sharding is then exact.
Nothing is copied to the host here; statistics stay on the devices.
"""
import mxnet as mx
from mxnet import autograd, gluon

from ..errors import InputError
from .optim import clip_global_norm

__all__ = ['ShardedStep', 'split_batch']


def split_batch(arrays, contexts):
    """Splits each array along axis 0 over ``contexts`` (uneven splits allowed).

    Parameters
    ----------
    arrays : sequence of numpy arrays or NDArrays, each (B, ...)
    contexts : list of mx.Context

    Outputs
    -------
    list (one per device actually used) of lists of NDArrays
        A batch with fewer rows than devices uses only the first ``B`` devices.
    """
    batch = arrays[0].shape[0]
    if batch == 0:
        raise InputError('empty batch: expected at least one row')
    used = contexts[:min(batch, len(contexts))]
    per_array = []
    for array in arrays:
        if array.shape[0] != batch:
            raise InputError(f'batch arrays disagree on the batch size: {array.shape[0]} vs '
                             f'{batch}; expected every array to be (B, ...)')
        if not isinstance(array, mx.nd.NDArray):
            array = mx.nd.array(array, dtype=array.dtype, ctx=mx.cpu())
        per_array.append(gluon.utils.split_and_load(array, used, even_split=False))
    return [list(shard) for shard in zip(*per_array)]


class ShardedStep:
    """Forward/backward over device shards, gradient accumulation, all-reduce, clip, update.

    Parameters
    ----------
    params : gluon.ParameterDict
        The trained parameters (``net.collect_params()``), initialised on ``contexts``.
    trainer : gluon.Trainer
        Created with ``update_on_kvstore=False`` over ``params``.
    contexts : list of mx.Context
    loss_fn : callable
        ``loss_fn(*shard, **globals) -> (loss, stats)``: ``shard`` are the batch arrays on one
        device, ``globals`` the keyword arguments given to :meth:`forward_backward` (global
        normalisers); ``loss`` a scalar-sized NDArray whose sum over shards is the batch
        loss; ``stats`` a ``(K,)`` NDArray of sums to log.
    max_grad_norm : float
        Global-norm clipping threshold (<= 0: off).
    accumulate : int
        Micro-batches per update; each micro-batch loss is divided by it.
    use_amp : bool
        Scale losses with MXNet AMP's dynamic loss scaler (``amp.init_trainer`` must have been
        called on ``trainer``).
    """

    def __init__(self, params, trainer, contexts, loss_fn, max_grad_norm=1.0, accumulate=1,
                 use_amp=False):
        self.params = [p for p in params.values() if p.grad_req != 'null']
        self.trainer = trainer
        self.contexts = list(contexts)
        self.loss_fn = loss_fn
        self.max_grad_norm = max_grad_norm
        self.accumulate = int(accumulate)
        self.use_amp = use_amp
        self._pending = 0   # micro-batches since the last update
        if self.accumulate > 1:
            for p in self.params:
                p.grad_req = 'add'
            self._zero_grad()

    @property
    def pending(self):
        """Micro-batches whose gradients wait for the next :meth:`update`."""
        return self._pending

    def _zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def forward_backward(self, arrays, **global_args):
        """Runs one micro-batch: split, forward under one ``record()``, backward per shard.

        Parameters
        ----------
        arrays : sequence of arrays (B, ...)
            The micro-batch, on the host (numpy or CPU NDArray).
        **global_args
            Passed to ``loss_fn`` unchanged (normalisers computed from the whole batch).

        Outputs
        -------
        list of (device_index, stats)
            ``stats`` of each shard, still on its device.
        """
        shards = split_batch(arrays, self.contexts)
        if len(shards) < len(self.contexts):
            raise InputError(f'a training batch of {arrays[0].shape[0]} rows cannot feed '
                             f'{len(self.contexts)} devices; drop the last small batch')
        with autograd.record():
            results = [self.loss_fn(*shard, **global_args) for shard in shards]
            losses = [loss / self.accumulate if self.accumulate > 1 else loss
                      for loss, _ in results]
        if self.use_amp:
            from mxnet.contrib import amp
            with amp.scale_loss(losses, self.trainer) as scaled:
                autograd.backward(scaled)
        else:
            autograd.backward(losses)
        self._pending += 1
        return [(i, stats) for i, (_, stats) in enumerate(results)]

    def update(self, learning_rate):
        """All-reduces, clips and applies the accumulated gradients.

        Parameters
        ----------
        learning_rate : float
            Rate of this update (from the schedule).

        Outputs
        -------
        grad_norm : (1,) NDArray or None
            Global gradient norm before clipping (None when clipping is off), on device 0.
        """
        if self._pending == 0:
            raise RuntimeError('ShardedStep.update() without a forward_backward() before it')
        self.trainer.set_learning_rate(learning_rate)
        self.trainer.allreduce_grads()
        if self.use_amp:
            from mxnet.contrib import amp
            amp.unscale(self.trainer)
        norm = None
        if self.max_grad_norm and self.max_grad_norm > 0:
            norm = clip_global_norm(self.params, self.max_grad_norm)
        self.trainer.update(1)
        if self.accumulate > 1:
            self._zero_grad()
        self._pending = 0
        return norm
