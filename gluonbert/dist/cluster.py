"""Where a job trains: devices, the split of a batch over them, and the workers of a
multi-process job.

* ``--gpus 0,1`` / ``--cpus N`` to MXNet contexts (:func:`parse_devices`), and a batch split
  over them (:func:`split_batch`);
* :class:`Cluster`: this worker's rank, the number of workers, the ``gluon.Trainer`` whose
  ``allreduce_grads`` sums gradients over devices and workers (MXNet's kvstore, or Horovod),
  and the one other thing workers must agree on every step: the global loss normalisers
  (masked-token weight and sentence count of *all* workers' batches), so that N workers with
  batch B give exactly the update of one process with batch N x B. Rank and worker count come
  from the kvstore or Horovod, never from arguments.
"""
import dataclasses

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..errors import ConfigError, InputError

__all__ = ['parse_devices', 'on_cpu', 'split_batch', 'Cluster', 'make_cluster', 'KVStoreSums',
           'HorovodSums', 'HorovodTrainer', 'init_horovod', 'horovod_device']


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


def on_cpu(contexts):
    """Whether every context is a CPU: gluonbert's CPU kernels can then run (blocks take
    ``kernels=on_cpu(contexts)``)."""
    return all(ctx.device_type == 'cpu' for ctx in contexts)


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
        (processes started by ``horovodrun``); see :func:`horovod_device`. No kvstore is
        created.

    Outputs
    -------
    Cluster
        With Horovod, ``contexts`` holds this process's one device.
    """
    if comm_backend == 'horovod':
        if len(contexts) > 1 and any(c.device_type != 'gpu' for c in contexts):
            raise ConfigError(f'--comm-backend horovod: {len(contexts)} CPU contexts given; '
                              'Horovod runs one process per device (use --cpus 1 and start '
                              'more processes)')
        hvd = init_horovod()
        context = horovod_device(contexts, hvd.local_rank(), hvd.local_size())
        sums = HorovodSums(hvd) if hvd.size() > 1 else None
        return Cluster([context], None, hvd.rank(), hvd.size(), sums, hvd)
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
        sums = KVStoreSums(kv)
    # The launcher maps output lines to ranks through this line.
    if 'dist' in kvstore:
        print(f'gluonbert: kvstore rank {kv.rank} of {kv.num_workers}', flush=True)
    return Cluster(list(contexts), kv, kv.rank, kv.num_workers, sums)


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


def horovod_device(contexts, local_rank, local_size):
    """This Horovod process's device.

    Every process of a host gets the same command line, so ``--gpus`` lists the host's GPUs,
    one per process: the process of local rank ``r`` (``horovodrun -H host:4`` starts local
    ranks 0..3 on ``host``) takes the ``r``-th id. On CPUs each process uses ``--cpus 1``.

    Parameters
    ----------
    contexts : list of mx.Context
        From :func:`parse_devices`.
    local_rank, local_size : int
        This process's index among the processes of its host, and their number.

    Outputs
    -------
    mx.Context
    """
    if len(contexts) == 1 and (contexts[0].device_type != 'gpu' or local_size == 1):
        return contexts[0]
    if len(contexts) != local_size:
        ids = ','.join(str(c.device_id) for c in contexts)
        raise ConfigError(f'--gpus {ids} with --comm-backend horovod: {local_size} processes '
                          f'on this host; expected one GPU id per process ({local_size} ids, '
                          'the process of local rank r takes the r-th)')
    return contexts[local_rank]


class HorovodSums:
    """Sums small host arrays over Horovod workers (allreduce, in float64).

    Every call is one collective under the same tensor name (every worker calls at the same
    point of every update), as Horovod expects of a collective repeated every step: its
    response cache is keyed by the name, which a new name per call would defeat.
    """

    NAME = 'gluonbert.sums'

    def __init__(self, hvd):
        self._hvd = hvd

    def __call__(self, values):
        local = mx.nd.array(np.asarray(values, dtype=np.float64).ravel(), dtype='float64')
        total = self._hvd.allreduce(local, average=False, name=self.NAME)
        return total.asnumpy()


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
                self._hvd.allreduce_(grads[0], average=False, name=f'gluonbert.grad.{index}',
                                     priority=-index)
