"""Devices and the kvstore: ``--gpus 0,1`` / ``--cpus N`` to MXNet contexts, and the seam for
multi-host training (rank and worker count come from the kvstore, never from arguments).
"""
import dataclasses

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..errors import ConfigError

__all__ = ['parse_devices', 'Cluster', 'make_cluster']


def parse_devices(gpus=None, cpus=None):
    """Contexts from command-line style arguments.

    Parameters
    ----------
    gpus : str or None
        Comma-separated GPU ids, e.g. ``'0,1'``.
    cpus : int or None
        Number of CPU contexts ``mx.cpu(0) .. mx.cpu(N-1)``. Several CPU contexts run their
        shards on separate engine threads: data parallelism across cores.

    Outputs
    -------
    list of mx.Context
        ``[mx.cpu()]`` when neither is given.
    """
    if gpus not in (None, '') and cpus:
        raise ConfigError(f'--gpus {gpus} and --cpus {cpus} both given; expected one of them')
    if gpus not in (None, ''):
        try:
            ids = [int(part) for part in str(gpus).split(',') if part.strip() != '']
        except ValueError:
            raise ConfigError(f'--gpus {gpus!r}: expected comma-separated integers such as '
                              "'0,1'") from None
        available = mx.context.num_gpus()
        bad = [i for i in ids if i < 0 or i >= available]
        if bad or not ids:
            raise ConfigError(f'--gpus {gpus!r}: this machine has {available} GPU(s); expected '
                              f'ids in [0, {available})')
        if len(set(ids)) != len(ids):
            raise ConfigError(f'--gpus {gpus!r}: repeated GPU id')
        return [mx.gpu(i) for i in ids]
    if cpus is None:
        return [mx.cpu()]
    if not isinstance(cpus, int) or cpus < 1:
        raise ConfigError(f'--cpus {cpus!r}: expected a positive number of CPU contexts')
    return [mx.cpu(i) for i in range(cpus)]


@dataclasses.dataclass
class Cluster:
    """Where this process trains.

    Attributes
    ----------
    contexts : list of mx.Context
        This worker's devices; each batch is split over them.
    kvstore : mx.kv.KVStore or None
        Passed to ``gluon.Trainer``; None for a single device on one host (and for Horovod).
    rank : int
        This worker's index (0 on one host). Only rank 0 writes checkpoints, logs and plots.
    num_workers : int
        Number of worker processes (1 on one host). Worker ``rank`` reads every
        ``num_workers``-th shard of the data.
    sums : callable or None
        Sums a small host array over all workers (None: one worker).
    hvd : module or None
        ``horovod.mxnet`` when the Horovod back-end is used.
    """
    contexts: list
    kvstore: object
    rank: int = 0
    num_workers: int = 1
    sums: object = None
    hvd: object = None

    @property
    def is_main(self):
        return self.rank == 0

    def sum_over_workers(self, values):
        """``values`` (a small array) summed over every worker's copy."""
        values = np.asarray(values, dtype=np.float64)
        return values if self.sums is None else self.sums(values)

    def sync_weights(self, trainer):
        """Gives every worker rank 0's parameters before the first (or resumed) update.

        Gluon broadcasts them lazily, inside the first ``allreduce_grads``: the kvstore's
        ``broadcast`` pull of a parameter is then still in flight while the same key's
        gradients are pushed. With ``update_on_kvstore=False`` the servers keep the summed
        gradient under the parameter's key, so a late pull returns that sum, and the worker
        silently takes a gradient for its weights (the ``dist_sync`` divergence of the NSP
        head). Here every pull completes before any gradient is pushed.
        """
        if self.kvstore is None or self.hvd is not None:
            return
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        if trainer._params_to_init:
            trainer._init_params()
        mx.nd.waitall()

    def make_trainer(self, params, optimizer):
        """A ``gluon.Trainer`` reducing gradients over devices and workers.

        Updates run on the workers (``update_on_kvstore=False``): every worker applies the
        same summed gradient, so parameters stay identical without being pulled back.
        """
        if self.hvd is not None:
            from .distributed import HorovodTrainer
            self.hvd.broadcast_parameters(params, root_rank=0)
            return HorovodTrainer(params, optimizer, self.hvd)
        return gluon.Trainer(params, optimizer, kvstore=self.kvstore, update_on_kvstore=False)


def make_cluster(contexts, kvstore='device', comm_backend='kvstore'):
    """Creates the kvstore and reads rank / worker count from it.

    A ``dist_sync`` or ``dist_sync_device`` kvstore (started by ``gluonbert launch``, which
    sets the DMLC_* environment) slots in here unchanged: the Trainer gets the same object,
    and rank and worker count come from it.

    Parameters
    ----------
    contexts : list of mx.Context
    kvstore : str
        ``'device'`` (reduce on the devices) or ``'local'`` (reduce on the CPU), or a
        ``dist_sync``/``dist_sync_device``/``dist_async`` type.
    comm_backend : {'kvstore', 'horovod'}
        ``'horovod'``: one device per process, gradients summed by Horovod's allreduce
        (processes started by ``horovodrun``).

    Outputs
    -------
    Cluster
    """
    if comm_backend == 'horovod':
        from .distributed import HorovodSums, init_horovod
        if len(contexts) != 1:
            raise ConfigError(f'--comm-backend horovod: {len(contexts)} devices given; Horovod '
                              'runs one process per device (use --cpus 1 or one --gpus id)')
        hvd = init_horovod()
        sums = HorovodSums(hvd) if hvd.size() > 1 else None
        return Cluster(list(contexts), None, hvd.rank(), hvd.size(), sums, hvd)
    if comm_backend != 'kvstore':
        raise ConfigError(f"--comm-backend {comm_backend!r}: expected 'kvstore' or 'horovod'")
    if kvstore not in ('device', 'local') and not str(kvstore).startswith('dist'):
        raise ConfigError(f"--kvstore {kvstore!r}: expected 'device', 'local' or a dist_* type")
    if len(contexts) == 1 and 'dist' not in kvstore:
        return Cluster(list(contexts), None, 0, 1)   # nothing to reduce
    from .rendezvous import create_kvstore   # mx.kv.create with a start-up deadline
    kv = create_kvstore(kvstore)
    sums = None
    if kv.num_workers > 1:
        from .distributed import KVStoreSums
        sums = KVStoreSums(kv)
    # The launcher maps output lines to ranks through this line.
    if 'dist' in kvstore:
        print(f'gluonbert: kvstore rank {kv.rank} of {kv.num_workers}', flush=True)
    return Cluster(list(contexts), kv, kv.rank, kv.num_workers, sums)
