"""The training engine: one training step and one loop for pretraining, fine-tuning and any
task built on them.

A task (:class:`Task`; pretraining in :mod:`~gluonbert.train.pretrain`, fine-tuning in
:mod:`~gluonbert.train.finetune`) says *what* is trained: the model, the batches, the loss,
what happens at the end of an epoch and what is written at the end. The engine does the rest,
the same way for every task::

    engine = Engine(config)                      # seeds, devices, workers, AMP
    net = task.build(engine)                     # the model on engine.contexts
    engine.attach(net, task.loss, task.batches.total_updates)   # Trainer, schedule
    while engine.done < total:
        result = engine.step(task.batches.next_update())        # one optimiser update
        ...                                      # log, end of epoch, checkpoint, signals

:meth:`Engine.step` is the whole update, top to bottom in one method: the loss normalisers
summed over the workers, ``split_and_load`` over the devices, forward and backward under
``autograd.record()``, the all-reduce over devices and workers, global-norm clipping, the
optimiser update. :func:`train` wraps it with what a run needs: one run per output directory
(:class:`~gluonbert.train.run_directory.RunDirectory`), exact resume from the newest
checkpoint, the log, the end of each epoch, checkpoints, and SIGINT/SIGTERM (every worker
finishes the same update, a checkpoint is written, :class:`Interrupted` says how to resume).
The benchmarks time :meth:`Engine.step`, so the speed they report is the speed users get.
"""
import dataclasses
import os
import random
import signal
import time

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..dist.cluster import make_cluster, parse_devices, split_batch
from ..errors import ConfigError, Interrupted
from ..platform import amx_status
from .checkpoint import load_checkpoint, reseed_mxnet, save_checkpoint
from .metrics import DeviceSums
from .optim import WarmupLinearSchedule, clip_global_norm, create_optimizer, \
    exclude_from_weight_decay
from .progress import TrainProgress
from .run_directory import RunDirectory

__all__ = ['Task', 'Update', 'StepResult', 'Engine', 'train', 'make_trainer', 'setup_amp',
           'seed_everything', 'StopSignals', 'Interrupted']


@dataclasses.dataclass
class Update:
    """The micro-batches of one optimiser update on this worker.

    Attributes
    ----------
    batches : list of NamedTuple batches
        ``accumulate`` micro-batches with named host arrays (``input_ids`` (B, T),
        ``valid_length`` (B,), ...), fewer at the end of an epoch, none when this worker has no
        rows in the update (it still takes part in the all-reduce).
    epoch : int or None
        1-based epoch of these batches (None: an endless stream, as in pretraining).
    epoch_end : bool
        The last update of the epoch: the engine then calls :meth:`Task.end_epoch`.
    """
    batches: list
    epoch: int = None
    epoch_end: bool = False


@dataclasses.dataclass
class StepResult:
    """What :meth:`Engine.step` did.

    Attributes
    ----------
    lr : float
        The learning rate of the update.
    grad_norm : (1,) NDArray or None
        Global gradient norm before clipping, on device 0 (None when clipping is off); not
        copied to the host here.
    rows, tokens : int
        Sequences and real (unpadded) tokens of this worker's micro-batches.
    stop : bool
        Some worker was asked to stop (SIGINT/SIGTERM): every worker stops after this update.
    """
    lr: float
    grad_norm: object
    rows: int
    tokens: int
    stop: bool


class Task:
    """What a task gives the engine.

    Attributes
    ----------
    name : str
        ``'pretrain'`` or ``'finetune'``: recorded in ``run.json``; a resumed run must match.
    batches
        Set by :meth:`build`: ``total_updates`` (the schedule's length), ``next_update()`` (the
        next :class:`Update` of this worker), ``state_dict()`` / ``load_state_dict(state)``
        (the position, JSON-serialisable: a resumed run continues with the next update).
    loss
        ``names`` (the K statistics it sums), ``count_names`` and ``counts(batch)`` (the loss
        normalisers' local parts of a micro-batch, a host list: summed by the engine over the
        update and over all workers), ``loss(net, shard, totals) -> (loss (1,), stats (K,))`` on one
        device, and ``metrics(sums) -> dict`` (logged values from summed statistics; no side
        effects).
    """
    name = 'task'
    batches = None
    loss = None

    def check(self, engine):
        """Validates everything that can be validated without writing anything (data files,
        the model's configuration and sizes); called before the run directory is touched, so
        that a start refused here leaves no trace. Raises a ``GluonBERTError``."""

    def build(self, engine):
        """Loads the data of this worker (``engine.cluster.rank``), sets :attr:`batches` and
        returns the model, initialised on ``engine.contexts`` and hybridized. May write into
        ``engine.out_dir`` (prepared data, converted weights): a failure takes it back."""
        raise NotImplementedError

    def end_epoch(self, net, epoch, train_metrics, engine):
        """After the last update of an epoch, with the epoch's training metrics
        (:meth:`Engine.epoch_metrics`). Returns True to end the run early."""
        return False

    def state_dict(self):
        """The task's own state to checkpoint (e.g. the best epoch so far)."""
        return {}

    def load_state_dict(self, state):
        """Restores :meth:`state_dict`."""

    def finish(self, net, engine, summary):
        """At the end of a finished run: writes the task's outputs (rank 0) and completes
        ``summary``."""
        return summary


def seed_everything(seed):
    """Seeds Python's, numpy's and MXNet's (every device's) generators."""
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed, ctx='all')


def setup_amp(contexts, dtype):
    """Turns on MXNet AMP (float16 + dynamic loss scaling) for GPU training.

    Outputs
    -------
    bool
        Whether AMP is on. float16 on a CPU context raises :class:`ConfigError`.
    """
    if dtype != 'float16':
        return False
    cpus = [c for c in contexts if c.device_type == 'cpu']
    if cpus:
        raise ConfigError(f'--dtype float16 needs GPUs (MXNet AMP loss scaling is GPU-only); '
                          f'got {cpus}. Use --gpus, or --dtype float32 on CPU')
    from mxnet.contrib import amp
    amp.init(target_dtype='float16')
    return True


def make_trainer(net, optimizer_config, cluster, use_amp=False):
    """The one ``gluon.Trainer`` factory of gluonbert.

    BERT's weight-decay rule (no decay of biases and LayerNorm ``gamma``/``beta``), the
    optimiser of ``optimizer_config`` (:class:`~gluonbert.train.optim.BERTAdamW`: one fused
    ``adamw_update`` per parameter, or LAMB), gradients reduced over devices and workers by
    the cluster's kvstore (``update_on_kvstore=False``: every worker applies the same summed
    gradient) or Horovod, and AMP's loss scaler when ``use_amp``.

    Parameters
    ----------
    net : gluon.Block
        Initialised on the cluster's contexts.
    optimizer_config : OptimizerConfig
    cluster : Cluster
    use_amp : bool

    Outputs
    -------
    gluon.Trainer
    """
    exclude_from_weight_decay(net)
    trainer = cluster.make_trainer(net.collect_params(), create_optimizer(optimizer_config))
    if use_amp:
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
    return trainer


class StopSignals:
    """SIGINT and SIGTERM ask the loop to stop after the current update (with a checkpoint).

    A second signal stops at once (the default behaviour). Signals are only caught in the
    main thread; elsewhere this does nothing.
    """

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum:                 # asked twice: give up at once
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.signum = signum

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:              # not the main thread
            self._previous.clear()
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Engine:
    """Devices, workers, the optimiser and the one training step of every task.

    Parameters
    ----------
    config : RunConfig
        The seed, the optimiser (:class:`~gluonbert.train.config.OptimizerConfig`) and the
        devices (:class:`~gluonbert.train.config.DeviceConfig`).
    cluster : Cluster, optional
        The workers; default: made from ``config.devices`` (:func:`make_cluster`).

    Attributes
    ----------
    contexts : list of mx.Context
        This worker's devices; each micro-batch is split over them.
    cluster : Cluster
        Rank, worker count, gradient reduction.
    done : int
        Updates made so far.
    signals : StopSignals
        Set by :func:`train`; its ``signum`` is shared with the other workers every step.
    """

    def __init__(self, config, cluster=None):
        self.config = config
        seed_everything(config.seed)
        devices = config.devices
        if cluster is None:
            check_job(devices)
        self.contexts = cluster.contexts if cluster else parse_devices(devices.gpus,
                                                                       devices.cpus)
        self.use_amp = setup_amp(self.contexts, devices.dtype)
        self.cluster = cluster or make_cluster(self.contexts, devices.kvstore,
                                               devices.comm_backend)
        self.contexts = self.cluster.contexts    # Horovod: this process's one device of --gpus
        self.signals = StopSignals()
        self.progress = None
        self.net = self.loss = self.trainer = self.schedule = None
        self.done = 0

    @property
    def out_dir(self):
        return self.config.out_dir

    def attach(self, net, loss, total_updates):
        """Makes the optimiser of ``net`` and the learning-rate schedule of ``total_updates``.

        Parameters
        ----------
        net : gluon.HybridBlock
            Initialised on :attr:`contexts`.
        loss
            The task's loss (see :class:`Task`).
        total_updates : int
            Length of the run (warm-up and decay of the schedule).
        """
        optimizer = self.config.optimizer
        self.net, self.loss = net, loss
        self.params = [p for p in net.collect_params().values() if p.grad_req != 'null']
        self.trainer = make_trainer(net, optimizer, self.cluster, self.use_amp)
        self.schedule = WarmupLinearSchedule(optimizer.lr, total_updates, optimizer.warmup_ratio)
        self.interval = DeviceSums(loss.names, self.contexts)   # statistics since the last log
        self.epoch = {'sums': np.zeros(len(loss.names)), 'rows': 0, 'seconds': 0.0}
        if optimizer.accumulate > 1:     # micro-batches add their gradients up
            for p in self.params:
                p.grad_req = 'add'
                p.zero_grad()

    def step(self, update):
        """One optimiser update from the micro-batches of ``update``.

        Parameters
        ----------
        update : Update

        Outputs
        -------
        StepResult
        """
        optimizer = self.config.optimizer
        # 1. The loss normalisers of the whole update (sentences, masked tokens), summed over
        #    every micro-batch and worker: a shard's loss divided by them is its share of the
        #    update's mean, so sharding and accumulation are exact. Beside them, whether any
        #    worker was signalled, so that all stop after this same update.
        local = np.zeros(len(self.loss.count_names))     # zeros: no rows on this worker
        for batch in update.batches:
            local += self.loss.counts(batch)
        *totals, stop = self.cluster.sum_over_workers([*local, float(self.signals.signum)])
        # 2. Forward and backward of every device's shard of every micro-batch. A batch with
        #    fewer rows than devices runs on the first B devices.
        used, rows, tokens = set(), 0, 0
        for batch in update.batches:
            shards = [type(batch)(*arrays) for arrays in split_batch(batch, self.contexts)]
            with autograd.record():
                results = [self.loss(self.net, shard, totals) for shard in shards]
            losses = [loss for loss, _ in results]
            if self.use_amp:
                from mxnet.contrib import amp
                with amp.scale_loss(losses, self.trainer) as scaled:
                    autograd.backward(scaled)
            else:
                autograd.backward(losses)
            for device, (_, stats) in enumerate(results):
                self.interval.add(device, stats)
            used.update(range(len(shards)))
            rows += len(batch.valid_length)
            tokens += int(np.sum(batch.valid_length))
        # 3. All-reduce: every device of every worker ends with the sum of all gradients. A
        #    device without rows in this update adds a zero gradient.
        idle = [i for i in range(len(self.contexts)) if i not in used]
        for p in self.params:
            for i in idle:
                p.list_grad()[i][:] = 0
        self.trainer.allreduce_grads()
        _mark_gradients_fresh(self.params, idle)
        if self.use_amp:
            from mxnet.contrib import amp
            amp.unscale(self.trainer)
        # 4. Clip the global L2 norm of the gradient to max_grad_norm: every device computes it
        #    on its own (identical) copy; the factor is applied inside the fused Adam update of
        #    step 5 (one pass over the weights instead of two).
        norm = None
        if optimizer.max_grad_norm > 0:
            norm = clip_global_norm(self.params, optimizer.max_grad_norm,
                                    self.trainer.optimizer)
        # 5. The update, at the schedule's rate.
        lr = self.schedule(self.done)
        self.trainer.set_learning_rate(lr)
        self.trainer.update(1)
        if optimizer.accumulate > 1:
            for p in self.params:
                p.zero_grad()
        self.done += 1
        # MXNet cannot save its generators' state: seeding them from (seed, update) after
        # every update gives a resumed run the dropout masks of an uninterrupted one.
        reseed_mxnet(self.config.seed, self.done)
        return StepResult(lr, norm, rows, tokens, bool(stop))

    def read_interval(self):
        """The statistics summed since the last call (one host synchronisation); they also
        count towards the current epoch.

        Outputs
        -------
        dict of str -> float
        """
        sums = self.interval.read()
        self.epoch['sums'] += [sums[name] for name in self.loss.names]
        return sums

    def epoch_metrics(self, seconds):
        """The task's metrics over every update of the epoch that just ended, with its
        sequences, their count and speed; resets the epoch's sums.

        Parameters
        ----------
        seconds : float
            Time the epoch's updates took.
        """
        sums = dict(zip(self.loss.names, self.epoch['sums'].tolist()))
        rows, seconds = self.epoch['rows'], self.epoch['seconds'] + seconds
        self.epoch = {'sums': np.zeros(len(self.loss.names)), 'rows': 0, 'seconds': 0.0}
        return {**self.loss.metrics(sums), 'count': rows, 'seconds': seconds,
                'sequences_per_s': rows / max(seconds, 1e-9)}


def check_job(devices):
    """Refuses a worker of a multi-process kvstore job (``DMLC_ROLE=worker``, as ``gluonbert
    launch`` starts it) without a distributed kvstore: it would train on its own, one of N
    independent runs writing the same output directory."""
    if os.environ.get('DMLC_ROLE') != 'worker' or devices.comm_backend != 'kvstore':
        return
    if not str(devices.kvstore).startswith('dist'):
        raise ConfigError(f'--kvstore {devices.kvstore}: this process is a worker of a kvstore '
                          f'job (DMLC_ROLE=worker, DMLC_NUM_WORKER='
                          f'{os.environ.get("DMLC_NUM_WORKER")}); expected --kvstore dist_sync '
                          '(or dist_sync_device, dist_async), or run it without gluonbert '
                          'launch as one process')


def _mark_gradients_fresh(params, devices):
    """Tells ``Trainer.update`` that the gradients of ``devices`` are current.

    A device that ran no backward pass in this update holds a gradient MXNet calls stale
    (``Trainer.update`` raises, or with ``ignore_stale_grad`` skips the device, whose weights
    would then drift from the others'); after the all-reduce it holds the same sum as every
    other device. MXNet 1.9 has no public way to say so.
    """
    for p in params:
        for i in devices:
            p.list_data()[i]._fresh_grad = True


def _record(step, epoch, metrics, result, seconds, rows, tokens, unit):
    record = {'step': step}
    if epoch is not None:
        record['epoch'] = epoch
    record.update(metrics)
    norm = result.grad_norm
    record.update({'lr': result.lr,
                   'grad_norm': float(norm.asnumpy()[0]) if norm is not None else 0.0,
                   f'{unit}_per_s': rows / max(seconds, 1e-9),
                   'tokens_per_s': tokens / max(seconds, 1e-9)})
    return record


def train(task, config):
    """Runs (or resumes) ``task`` with the settings of ``config``; see the module docstring.

    The start is checked before anything is written (the run directory and a resumed run's
    options by :class:`~gluonbert.train.run_directory.RunDirectory`, the data and the model by
    :meth:`Task.check`); a start that fails anyway before its first update takes back what it
    wrote. SIGINT/SIGTERM: every worker stops after the same update, rank 0 writes the
    checkpoint of that update while the others wait for it, and every worker names it.

    Parameters
    ----------
    task : Task
    config : RunConfig
        The task's config (:class:`PretrainConfig`, :class:`FinetuneConfig`).

    Outputs
    -------
    dict
        ``steps``, ``resumed_from``, ``seconds``, ``history`` (logged records), ``first`` and
        ``last`` records, ``finished``, ``out_dir``, plus what :meth:`Task.finish` adds.
    """
    # 1. seeds, devices, workers; checks of the directory, the data and the model (reads only)
    engine = Engine(config)
    cluster = engine.cluster
    directory = RunDirectory(config, task.name, cluster.is_main, cluster.num_workers)
    latest = directory.inspect()
    task.check(engine)
    try:
        # 2. the directory, the model and its data; the optimiser; the checkpoint to resume
        directory.claim()
        net = task.build(engine)
        total = task.batches.total_updates
        engine.attach(net, task.loss, total)
        history, resumed, stopped_early = [], 'a fresh start', False
        if latest is not None:
            meta = load_checkpoint(latest, net, engine.trainer)
            engine.done, history, resumed = meta['step'], meta['history'], f'resumed from {latest}'
            if directory.length_changes:
                resumed += _length_change(directory.length_changes, engine, total)
            position = meta['data_position']
            stopped_early = position['stopped_early']
            task.batches.load_state_dict(position['data'])
            task.load_state_dict(position['task'])
            engine.interval.add(0, mx.nd.array([position['pending'][k] for k in task.loss.names],
                                               ctx=engine.contexts[0]))
            engine.epoch = {'sums': np.array(position['epoch']['sums']),
                            'rows': position['epoch']['rows'],
                            'seconds': position['epoch']['seconds']}
        directory.commit(latest)
        # 3. every worker starts from rank 0's weights
        cluster.sync_weights(engine.trainer)
        end = min(config.stop_at_step or total, total)
        log_name = 'train.log' if cluster.is_main else f'train.rank{cluster.rank}.log'
        engine.progress = progress = TrainProgress(
            os.path.join(config.out_dir, log_name), total, engine.done, desc=task.name,
            bar=config.progress and cluster.is_main, console=cluster.is_main)
    except BaseException as err:
        directory.rollback()
        directory.release()
        if isinstance(err, Interrupted):
            raise Interrupted(f'{err} while the run was starting, before its first update; '
                              f'{config.out_dir} was left as it was', err.signum) from None
        raise
    directory.started()
    try:
        finished_before = engine.done >= total or stopped_early
        if finished_before:
            progress.message(f'{task.name}: the run in {config.out_dir} is finished (update '
                             f'{engine.done} of {total}{", stopped early" if stopped_early else ""}'
                             '); nothing to train, its outputs are written again')
        else:
            progress.message(f'{task.name}: {task} on {engine.contexts} (rank {cluster.rank} of '
                             f'{cluster.num_workers}), updates {engine.done}..{total} '
                             f'({resumed}; {amx_status()})')
        return _loop(task, config, engine, directory, net, total, end, history, latest,
                     stopped_early)
    finally:
        directory.release()


def _length_change(changes, engine, total):
    """The note a resumed run with another length prints: the schedule's rate before and
    after at the update it continues from."""
    optimizer = engine.config.optimizer
    (name, old, new), = changes
    before = WarmupLinearSchedule(optimizer.lr, max(1, round(total * old / new)),
                                  optimizer.warmup_ratio)(engine.done)
    if total < engine.done:
        raise ConfigError(f'--change-length: --{name.replace("_", "-")} {new} gives {total} '
                          f'updates, fewer than the {engine.done} the run has made; expected '
                          f'at least {engine.done}')
    after = engine.schedule(engine.done)
    return (f'; --change-length: {name} {old} -> {new}, the learning-rate schedule now spans '
            f'{total} updates: the rate at update {engine.done} is {after:.3g} instead of '
            f'{before:.3g}')


def _loop(task, config, engine, directory, net, total, end, history, latest, stopped_early):
    """The updates of :func:`train`, its checkpoints and its end (see there)."""
    cluster, progress = engine.cluster, engine.progress
    run_config = {task.name: dataclasses.asdict(config)}

    def save(step_done, epoch_seconds):
        if not cluster.is_main:
            return os.path.join(directory.checkpoints, f'step-{step_done:08d}')
        position = {'data': task.batches.state_dict(), 'task': task.state_dict(),
                    'pending': engine.interval.read(reset=False),
                    'epoch': {'sums': engine.epoch['sums'].tolist(),
                              'rows': engine.epoch['rows'],
                              'seconds': engine.epoch['seconds'] + epoch_seconds},
                    'stopped_early': stopped_early}
        return save_checkpoint(directory.checkpoints, net, engine.trainer, step_done, position,
                               config.seed, run_config, history, config.keep_checkpoints)

    def save_agreed(step_done, epoch_seconds):
        """The last checkpoint of this invocation, as a collective step: every worker waits
        for its own updates to complete (its gradients are with the servers), rank 0 saves,
        and the others wait until it has. Returns (path or None, rank 0's error or None)."""
        mx.nd.waitall()
        path, error = None, None
        try:
            path = save(step_done, epoch_seconds)
        except Exception as err:        # noqa: BLE001 -- told to every worker, then raised
            error = err
        if cluster.num_workers > 1:
            flags = np.zeros(len(task.loss.count_names) + 1)   # the shape of the step's sums
            flags[0] = 1.0 if cluster.is_main and error is None else 0.0
            if cluster.sum_over_workers(flags)[0] < 0.5:
                path = None
        return path, error

    begin = tick = epoch_tick = time.time()
    rows = tokens = 0
    saved = None
    with engine.signals:
        while engine.done < end and not stopped_early:
            update = task.batches.next_update()
            result = engine.step(update)
            done = engine.done
            progress.advance()
            rows, tokens = rows + result.rows, tokens + result.tokens
            engine.epoch['rows'] += result.rows
            if done % config.log_interval == 0 or done == end or update.epoch_end:
                metrics = task.loss.metrics(engine.read_interval())
                record = _record(done, update.epoch, metrics, result, time.time() - tick, rows,
                                 tokens, task.batches.unit)
                history.append(record)
                progress.log(record)
                tick, rows, tokens = time.time(), 0, 0
            if update.epoch_end:
                stopped_early = task.end_epoch(net, update.epoch,
                                               engine.epoch_metrics(time.time() - epoch_tick),
                                               engine)
                epoch_tick = time.time()
            last = done == end or stopped_early or result.stop
            if last:
                saved, error = save_agreed(done, time.time() - epoch_tick)
                if error is not None:
                    raise error
            elif done % config.checkpoint_interval == 0 or update.epoch_end:
                save(done, time.time() - epoch_tick)
            if result.stop:
                progress.close()
                signum = engine.signals.signum or signal.SIGTERM
                kept = (f'checkpoint {saved}' if saved else
                        f'no checkpoint of update {done} was written (rank 0 failed to save)')
                raise Interrupted(f'stopped by {signal.Signals(signum).name} after update '
                                  f'{done} of {total}; {kept}. Continue with the same command '
                                  'and --resume', signum)
    # 4. outputs
    progress.close()
    summary = {'steps': engine.done, 'resumed_from': 0 if latest is None else int(
        os.path.basename(latest).split('-')[1]), 'seconds': time.time() - begin,
        'first': history[0] if history else None, 'last': history[-1] if history else None,
        'history': history, 'finished': engine.done == total or stopped_early,
        'out_dir': config.out_dir}
    if not summary['finished']:                 # --stop-at-step: continue with --resume
        return summary
    if config.save_all_ranks and not cluster.is_main:
        net.save_parameters(os.path.join(config.out_dir, f'model.rank{cluster.rank}.params'))
    return task.finish(net, engine, summary)
