"""What several workers share: sums across workers, and the optional Horovod back-end.

The gradient all-reduce itself is MXNet's (``gluon.Trainer`` over a ``dist_sync*`` kvstore);
this module adds the one other thing workers must agree on every step: the global loss
normalisers (masked-token weight and sentence count of *all* workers' batches), so that N
workers with batch B give exactly the update of one process with batch N x B.
"""
import mxnet as mx
import numpy as np
from mxnet import gluon

from ..errors import ConfigError

__all__ = ['KVStoreSums', 'HorovodSums', 'HorovodTrainer', 'NORMALISER_KEY', 'init_horovod']

# A kvstore key no Trainer uses (Gluon numbers parameters 0..N-1).
NORMALISER_KEY = 2 ** 30


class KVStoreSums:
    """Sums small host arrays over the workers of a ``dist_sync*`` kvstore.

    Each call is one push (every worker's values) and one pull (their sum) on a reserved key;
    the servers merge exactly ``num_workers`` pushes per round. The key is created on the first
    call (a collective step: every worker makes its first call at the same point), with the
    length of that call's values; later calls must have the same length.

    Parameters
    ----------
    kvstore : mx.kv.KVStore
        Distributed (``kvstore.num_workers`` >= 1); created identically on every worker.
    """

    def __init__(self, kvstore):
        self._kv = kvstore
        self._size = None

    def __call__(self, values):
        values = np.asarray(values, dtype=np.float64).ravel()
        if self._size is None:
            self._size = values.size
            self._kv.init(NORMALISER_KEY, mx.nd.zeros((self._size,)))
        if values.size != self._size:
            raise ValueError(f'KVStoreSums: {values.size} values; this job sums {self._size}')
        local = mx.nd.array(values, dtype='float32')
        self._kv.push(NORMALISER_KEY, local)
        total = mx.nd.zeros((self._size,))
        self._kv.pull(NORMALISER_KEY, out=total)
        # Blocking here also orders rounds: the next push waits for this sum.
        return total.asnumpy().astype(np.float64)


def init_horovod():
    """Imports and initialises ``horovod.mxnet``; a clear error when it is not installed."""
    try:
        import horovod.mxnet as hvd
    except ImportError as err:
        raise ConfigError('--comm-backend horovod: horovod is not importable '
                          f'({err}); build it with HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 (see '
                          'docs/distributed.md) or use --kvstore dist_sync') from None
    hvd.init()
    return hvd


class HorovodSums:
    """Sums small host arrays over Horovod workers (allreduce)."""

    def __init__(self, hvd):
        self._hvd = hvd
        self._calls = 0

    def __call__(self, values):
        self._calls += 1
        local = mx.nd.array(np.asarray(values, dtype=np.float64), dtype='float32')
        total = self._hvd.allreduce(local, average=False, name=f'gluonbert_sums_{self._calls}')
        return total.asnumpy().astype(np.float64)


class HorovodTrainer(gluon.Trainer):
    """A ``gluon.Trainer`` whose gradient reduction is Horovod's allreduce (sum).

    One device per process (Horovod's model). Losses are already normalised by global
    quantities, so gradients are summed, not averaged.
    """

    def __init__(self, params, optimizer, hvd):
        super().__init__(params, optimizer, kvstore=None)
        self._hvd = hvd

    def _allreduce_grads(self):
        for index, param in enumerate(self._params):
            if param.grad_req != 'null':
                grads = param.list_grad()
                if len(grads) != 1:
                    raise ConfigError('--comm-backend horovod uses one device per process; '
                                      f'got {len(grads)} (start more processes instead)')
                self._hvd.allreduce_(grads[0], average=False, name=str(index),
                                     priority=-index)
