"""The data-parallel step of the training engine (:mod:`gluonbert.train.engine`).

One optimiser update is::

    for each micro-batch of the update (``accumulate`` of them, fewer at an epoch's end):
        shards = split_and_load(batch, contexts, even_split=False)
        with autograd.record():                      # one recording scope for all shards
            losses = [loss_fn(shard) for shard in shards]
        autograd.backward(losses)                    # gradients add up (grad_req='add')
    trainer.allreduce_grads()                        # sum over devices (and workers)
    clip_global_norm(...)                            # same norm on every device
    trainer.update(1)

Losses must already be normalised by *global* quantities: the number of sentences or masked
tokens of the whole update (every micro-batch, device and worker), computed on the host
before splitting, so that the sum of the shards' gradients equals the gradient of the
un-split update: sharding and accumulation are then exact.

A batch with fewer rows than devices runs on the first ``B`` devices; a device (or a whole
worker) without rows in an update contributes a zero gradient. No example is dropped.
Nothing is copied to the host here; statistics stay on the devices.
"""
from mxnet import autograd

from ..dist.cluster import split_batch
from .optim import clip_global_norm

__all__ = ['ShardedStep']


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
        ``loss_fn(*shard, totals) -> (loss, stats)``: ``shard`` are the batch arrays on one
        device, ``totals`` the global normalisers given to :meth:`forward_backward`; ``loss``
        a scalar-sized NDArray whose sum over shards, micro-batches and workers is the loss
        of the update; ``stats`` a ``(K,)`` NDArray of sums to log.
    max_grad_norm : float
        Global-norm clipping threshold (<= 0: off).
    accumulate : int
        Micro-batches per update (> 1: gradients add up, ``grad_req='add'``).
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
        self._used = set()  # devices that ran a backward pass since the last update
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

    def forward_backward(self, arrays, totals):
        """Runs one micro-batch: split, forward under one ``record()``, backward per shard.

        Parameters
        ----------
        arrays : sequence of arrays (B, ...)
            The micro-batch, on the host (numpy or CPU NDArray).
        totals : np.ndarray
            The update's global normalisers, passed to ``loss_fn`` unchanged.

        Outputs
        -------
        list of (device_index, stats)
            ``stats`` of each shard, still on its device (``B`` shards when ``B`` is smaller
            than the number of devices).
        """
        shards = split_batch(arrays, self.contexts)
        with autograd.record():
            results = [self.loss_fn(*shard, totals) for shard in shards]
            losses = [loss for loss, _ in results]
        if self.use_amp:
            from mxnet.contrib import amp
            with amp.scale_loss(losses, self.trainer) as scaled:
                autograd.backward(scaled)
        else:
            autograd.backward(losses)
        self._pending += 1
        self._used.update(range(len(shards)))
        return [(i, stats) for i, (_, stats) in enumerate(results)]

    def _zero_unused_devices(self):
        """Zero gradients on the devices that had no rows in this update; marks them fresh.

        ``grad_req='write'`` leaves the previous update's gradient there; its all-reduced
        sum then overwrites it, which ``Trainer.update`` must not take for a stale gradient.
        """
        unused = [i for i in range(len(self.contexts)) if i not in self._used]
        for p in self.params:
            for i in unused:
                p.list_grad()[i][:] = 0
        return unused

    def _mark_fresh(self, unused):
        for p in self.params:
            for i in unused:
                p.list_data()[i]._fresh_grad = True

    def update(self, learning_rate):
        """All-reduces, clips and applies the accumulated gradients.

        Also valid after no :meth:`forward_backward` at all: a worker of a multi-process job
        that has no rows in this update still takes part in the all-reduce with a zero
        gradient, so every worker applies the same update.

        Parameters
        ----------
        learning_rate : float
            Rate of this update (from the schedule).

        Outputs
        -------
        grad_norm : (1,) NDArray or None
            Global gradient norm before clipping (None when clipping is off), on device 0.
        """
        unused = self._zero_unused_devices()
        self.trainer.set_learning_rate(learning_rate)
        self.trainer.allreduce_grads()
        self._mark_fresh(unused)
        if self.use_amp:
            from mxnet.contrib import amp
            amp.unscale(self.trainer)
        norm = None
        if self.max_grad_norm and self.max_grad_norm > 0:
            norm = clip_global_norm(self.params, self.max_grad_norm, self.trainer.optimizer)
        self.trainer.update(1)
        if self.accumulate > 1:
            self._zero_grad()
        self._pending = 0
        self._used.clear()
        return norm
