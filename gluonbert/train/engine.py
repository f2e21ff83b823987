"""The training engine: one loop for pretraining, fine-tuning and any task built on them.

A task (:class:`Task`: pretraining in :mod:`~gluonbert.train.pretrain`, fine-tuning in
:mod:`~gluonbert.train.finetune`) says *what* is trained: the model, the batches of each
update, the loss and its global normalisers, the logged metrics, what happens at the end of
an epoch and what is written at the end. The engine does the rest, the same way for every
task, in :func:`train`, which reads top to bottom:

1. claim the output directory (:class:`RunDirectory`: one run per directory), seed Python,
   numpy and MXNet, create the devices and the cluster (kvstore or Horovod), AMP;
2. build the model, one ``Trainer`` (:func:`make_trainer`: BERT's Adam or LAMB, no weight
   decay on biases and LayerNorm), the sharded step (:class:`~gluonbert.train.loop.ShardedStep`);
3. resume from the newest checkpoint (parameters, optimiser state, data position, random
   generators, history, the task's own state such as the best epoch);
4. give every worker rank 0's weights before the first step (:meth:`Cluster.sync_weights`);
5. per update: the task's micro-batches, their normalisers summed over the workers, forward
   and backward on every device, all-reduce, clip, update; then log, evaluate at an epoch's
   end, checkpoint;
6. stop cleanly on SIGINT/SIGTERM (:class:`StopSignals`): every worker finishes the same
   update, a checkpoint is written, and :class:`Interrupted` says how to resume.
"""
import dataclasses
import functools
import json
import os
import random
import shutil
import signal
import time

import mxnet as mx
import numpy as np

from ..data.fileio import atomic_write
from ..errors import ConfigError, GluonBERTError
from ..runs import RUN_FILE, RUN_OUTPUTS, find_latest, remove_stale_temporaries
from . import checkpoint as ckpt
from ..dist.cluster import make_cluster, parse_devices
from .loop import ShardedStep
from .metrics import DeviceSums
from .optim import WarmupLinearSchedule, create_optimizer, exclude_from_weight_decay
from .progress import TrainProgress

__all__ = ['Task', 'Update', 'train', 'make_trainer', 'setup_amp', 'seed_everything',
           'RunDirectory', 'StopSignals', 'Interrupted']



class Interrupted(GluonBERTError):
    """SIGINT or SIGTERM stopped a run after a checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


@dataclasses.dataclass
class Update:
    """The micro-batches of one optimiser update on this worker.

    Attributes
    ----------
    batches : list of tuples of host arrays (B, ...)
        ``accumulate`` micro-batches, fewer at the end of an epoch, none when this worker has
        no rows in the update (it still takes part in the all-reduce).
    epoch : int
        1-based epoch of these batches.
    epoch_end : bool
        The last update of the epoch: the engine then calls :meth:`Task.end_epoch`.
    """
    batches: list
    epoch: int = 1
    epoch_end: bool = False


class Task:
    """What a task gives the engine. Subclasses set the attributes and the methods.

    Attributes
    ----------
    name : str
        ``'pretrain'`` or ``'finetune'``: recorded in ``run.json``; a resumed run must match.
    stats : tuple of str
        Names of the per-shard sums returned by :meth:`loss`.
    num_counts : int
        Length of :meth:`counts`.
    unit : str
        What one row is, for the throughput column (``pairs_per_s``, ``sequences_per_s``).
    log_epoch : bool
        Log records carry the epoch (fine-tuning: evaluation happens per epoch).
    total_steps : int
        Updates of the whole run (the schedule's length).
    """
    name = 'task'
    stats = ()
    num_counts = 1
    unit = 'sequences'
    log_epoch = False
    total_steps = 0

    def describe(self):
        """One line for the log: model, data, batch and update counts."""
        return ''

    def build(self, run):
        """Loads the data of this worker (``run.cluster.rank``), sets :attr:`total_steps`
        and returns the model, initialised on ``run.contexts`` and hybridized."""
        raise NotImplementedError

    def next_update(self):
        """The next :class:`Update` of this worker."""
        raise NotImplementedError

    def counts(self, batch):
        """Host list of the normalisers' local parts of one micro-batch (summed by the engine
        over the update's micro-batches and over all workers)."""
        raise NotImplementedError

    def loss(self, net, *shard_and_totals):
        """``(loss, stats)`` of one device's shard; see :class:`ShardedStep`."""
        raise NotImplementedError

    def metrics(self, sums):
        """Logged metrics (dict) from the summed :attr:`stats`."""
        raise NotImplementedError

    def data_state(self):
        """JSON-serialisable position of the data stream (to continue with the next update)."""
        raise NotImplementedError

    def load_data_state(self, state, rank, step):
        """Continues the data stream where ``state`` (saved by rank 0 after ``step`` updates)
        says."""
        raise NotImplementedError

    def end_epoch(self, net, epoch, run):
        """Called after the last update of an epoch. Returns True to end the run early."""
        return False

    def state_dict(self):
        """The task's own state to checkpoint (e.g. the best epoch so far)."""
        return {}

    def load_state_dict(self, state):
        """Restores :meth:`state_dict`."""

    def finish(self, net, run, summary):
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


class RunDirectory:
    """An output directory that belongs to one run.

    A new run into a directory holding another run's files (:data:`RUN_OUTPUTS`) is refused
    unless ``overwrite`` (the old run's checkpoints and outputs are deleted first) or
    ``resume`` (continue it: the newest valid checkpoint must exist, and be of the same task).
    Temporary checkpoint directories left by a killed save are removed.

    Parameters
    ----------
    config : RunConfig
    task_name : str
    is_main : bool
        Only rank 0 checks, cleans and writes.
    """

    def __init__(self, config, task_name, is_main=True):
        self.path = config.out_dir
        self.checkpoints = os.path.join(self.path, 'checkpoints')
        self.config = config
        self.task_name = task_name
        self.is_main = is_main

    def _existing_outputs(self):
        return [name for name in RUN_OUTPUTS if os.path.exists(os.path.join(self.path, name))
                and not (name == 'checkpoints' and not os.listdir(self.checkpoints))]

    def _remove_outputs(self):
        for name in RUN_OUTPUTS:
            path = os.path.join(self.path, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def _recorded_task(self):
        path = os.path.join(self.path, RUN_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f).get('task')
        except (OSError, ValueError) as err:
            raise ConfigError(f'{path}: unreadable ({err}); expected the JSON gluonbert '
                              'writes for a run. Use --overwrite to start a new run') from None

    def claim(self):
        """Checks the directory against the config; returns the checkpoint to resume or None.

        Outputs
        -------
        str or None
            Path of the ``step-*`` checkpoint to continue from.
        """
        config = self.config
        flag = '--resume' if config.resume else '--resume-if-possible'
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ConfigError(f'--out-dir {self.path}: is a file; expected a directory')
        os.makedirs(self.path, exist_ok=True)
        if self.is_main:
            remove_stale_temporaries(self.checkpoints)
        latest = find_latest(self.checkpoints)
        if config.overwrite:
            latest = None
        if not self.is_main:        # rank 0 checks and cleans; the others follow its choice
            return latest
        existing = self._existing_outputs()
        if config.overwrite:
            self._remove_outputs()
        elif config.resume or config.resume_if_possible:
            if latest is None and config.resume:
                raise ConfigError(
                    f'{flag}: no valid checkpoint in {self.checkpoints}; expected the '
                    f'--out-dir of an earlier {self.task_name} run. Run without --resume to '
                    'start afresh, or use --resume-if-possible')
            recorded = self._recorded_task()
            if latest is not None and recorded not in (None, self.task_name):
                raise ConfigError(f'{flag}: {self.path} holds a {recorded} run; this is a '
                                  f'{self.task_name} run. Use another --out-dir')
            if latest is None and existing:
                self._remove_outputs()     # a run that never reached its first checkpoint
        elif existing:
            raise ConfigError(f'--out-dir {self.path} holds another run ({", ".join(existing)}); '
                              'expected an empty or new directory. Use --resume to continue '
                              'that run, --overwrite to replace it, or another --out-dir')
        with atomic_write(os.path.join(self.path, RUN_FILE), newline='\n') as f:
            json.dump({'task': self.task_name, 'config': dataclasses.asdict(config),
                       'resumed_from': latest}, f, indent=2)
        return latest


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


@dataclasses.dataclass
class _Run:
    """What a running task may use from the engine (contexts, cluster, progress, paths)."""
    config: object
    contexts: list
    cluster: object
    progress: object = None
    directory: RunDirectory = None

    @property
    def out_dir(self):
        return self.config.out_dir


def _record(step, task, sums, lr, norm, seconds, rows, tokens, epoch):
    record = {'step': step}
    if epoch is not None:
        record['epoch'] = epoch
    record.update(task.metrics(sums))
    record.update({'lr': lr, 'grad_norm': float(norm.asnumpy()[0]) if norm is not None else 0.0,
                   f'{task.unit}_per_s': rows / max(seconds, 1e-9),
                   'tokens_per_s': tokens / max(seconds, 1e-9)})
    return record


def train(task, config):
    """Runs (or resumes) ``task`` with the settings of ``config``; see the module docstring.

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
    # 1. devices, cluster, output directory, seeds
    seed_everything(config.seed)
    contexts = parse_devices(config.devices.gpus, config.devices.cpus)
    use_amp = setup_amp(contexts, config.devices.dtype)
    cluster = make_cluster(contexts, config.devices.kvstore, config.devices.comm_backend)
    contexts = cluster.contexts     # Horovod: this process's one device of --gpus
    directory = RunDirectory(config, task.name, cluster.is_main)
    latest = directory.claim()
    run = _Run(config, contexts, cluster, directory=directory)
    # 2. model, trainer, step
    net = task.build(run)
    trainer = make_trainer(net, config.optimizer, cluster, use_amp)
    step = ShardedStep(net.collect_params(), trainer, contexts, functools.partial(task.loss, net),
                       config.optimizer.max_grad_norm, config.optimizer.accumulate, use_amp)
    sums = DeviceSums(task.stats, contexts)
    # 3. resume
    done, history, resumed, stopped_early = 0, [], 'a fresh start', False
    if latest is not None:
        meta = ckpt.load_checkpoint(latest, net, trainer)
        done, history, resumed = meta['step'], meta['history'], f'resumed from {latest}'
        position = meta['data_position']
        stopped_early = position['stopped_early']
        task.load_data_state(position['data'], cluster.rank, done)
        task.load_state_dict(position['task'])
        sums.add(0, mx.nd.array([position['pending'][k] for k in task.stats], ctx=contexts[0]))
    # 4. every worker starts from rank 0's weights
    cluster.sync_weights(trainer)
    schedule = WarmupLinearSchedule(config.optimizer.lr, task.total_steps,
                                    config.optimizer.warmup_ratio)
    end = min(config.stop_at_step or task.total_steps, task.total_steps)
    log_name = 'train.log' if cluster.is_main else f'train.rank{cluster.rank}.log'
    run.progress = progress = TrainProgress(
        os.path.join(config.out_dir, log_name), task.total_steps, done, desc=task.name,
        bar=config.progress and cluster.is_main, console=cluster.is_main)
    progress.message(f'{task.name}: {task.describe()} on {contexts} (rank {cluster.rank} of '
                     f'{cluster.num_workers}), updates {done}..{task.total_steps} ({resumed})')
    run_config = {task.name: dataclasses.asdict(config)}

    def save(step_done):
        if not cluster.is_main:
            return os.path.join(directory.checkpoints, f'step-{step_done:08d}')
        position = {'data': task.data_state(), 'task': task.state_dict(),
                    'pending': sums.read(reset=False), 'stopped_early': stopped_early}
        return ckpt.save_checkpoint(directory.checkpoints, net, trainer, step_done, position,
                                    config.seed, run_config, history, config.keep_checkpoints)

    # 5. the loop
    begin = tick = time.time()
    rows = tokens = 0
    with StopSignals() as stop:
        while done < end and not stopped_early:
            update = task.next_update()
            local = np.sum([task.counts(b) for b in update.batches], axis=0) \
                if update.batches else np.zeros(task.num_counts)
            totals = cluster.sum_over_workers([*local, float(stop.signum)])
            stop_requested = int(totals[-1])           # any worker was signalled
            for batch in update.batches:
                for device, values in step.forward_backward(batch, totals[:-1]):
                    sums.add(device, values)
                rows += len(batch[0])
                tokens += int(np.sum(batch[2]))
            lr = schedule(done)
            norm = step.update(lr)
            done += 1
            # MXNet cannot save its generators' state: seeding them from (seed, update) after
            # every update gives a resumed run the dropout masks of an uninterrupted one,
            # wherever it was stopped.
            ckpt.reseed_mxnet(config.seed, done)
            progress.advance()
            if done % config.log_interval == 0 or done == end or update.epoch_end:
                record = _record(done, task, sums.read(), lr, norm, time.time() - tick, rows,
                                 tokens, update.epoch if task.log_epoch else None)
                history.append(record)
                progress.log(record)
                tick, rows, tokens = time.time(), 0, 0
            if update.epoch_end:
                stopped_early = task.end_epoch(net, update.epoch, run)
            if (done % config.checkpoint_interval == 0 or done == end or update.epoch_end
                    or stopped_early or stop_requested):
                saved = save(done)
            if stop_requested:
                progress.close()
                name = signal.Signals(stop.signum or signal.SIGTERM).name
                raise Interrupted(f'stopped by {name} after update {done} of '
                                  f'{task.total_steps}; checkpoint {saved}. Continue with the '
                                  'same command and --resume', stop.signum or signal.SIGTERM)
    # 6. outputs
    progress.close()
    summary = {'steps': done, 'resumed_from': 0 if latest is None else int(
        os.path.basename(latest).split('-')[1]), 'seconds': time.time() - begin,
        'first': history[0] if history else None, 'last': history[-1] if history else None,
        'history': history, 'finished': done == task.total_steps or stopped_early,
        'out_dir': config.out_dir}
    if not summary['finished']:                 # --stop-at-step: continue with --resume
        return summary
    if config.save_all_ranks and not cluster.is_main:
        net.save_parameters(os.path.join(config.out_dir, f'model.rank{cluster.rank}.params'))
    return task.finish(net, run, summary)
