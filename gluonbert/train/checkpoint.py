"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a directory ``<run>/checkpoints/step-00001000/`` holding

* ``model.params``   -- the network (GluonNLP-compatible names; loadable on its own),
* ``optimizer.params`` -- optimiser moments, keyed by parameter name (``mx.nd.save``, no pickle),
* ``meta.json``       -- step, data position, random-generator states, configuration, the
  optimiser's update counters, the logged history, and the size and sha1 of both files.

It is built in a hidden temporary directory and renamed into place, so a crash never leaves a
half-written ``step-*`` directory; a damaged one (truncated file, bad JSON) fails the sha1/size
check and :func:`gluonbert.runs.find_latest` skips it with a warning. Only the newest ``keep``
are kept.

MXNet cannot read back its generators' state. The engine seeds them from ``(seed, update)``
after every update (:func:`reseed_mxnet`), and :func:`load_checkpoint` does the same for the
update it resumes after: dropout masks after a resume are the ones the uninterrupted run
drew, wherever it was stopped.
"""
import json
import logging
import os
import random
import shutil

import mxnet as mx
import numpy as np

from ..data.fileio import atomic_write, sha1_of_file
from ..errors import CheckpointError
from ..runs import CHECKPOINT_FORMAT, list_checkpoints, read_checkpoint_meta
from ..model.checkpoint import atomic_nd_save, load_parameters, save_parameters

__all__ = ['save_checkpoint', 'load_checkpoint', 'reseed_mxnet', 'rng_state', 'set_rng_state']

_LOG = logging.getLogger(__name__)


def rng_state():
    """Python's and numpy's global generator states as JSON-serialisable values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {'python': [version, list(internal), gauss],
            'numpy': [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def set_rng_state(state):
    """Restores what :func:`rng_state` returned."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def reseed_mxnet(seed, step):
    """Seeds MXNet's generators on every device from ``(seed, step)``."""
    mx.random.seed((int(seed) * 1_000_003 + int(step)) % (2 ** 31 - 1), ctx='all')


def _optimizer_arrays(trainer, names):
    """Flattens the first device's optimiser states into ``{name/k: NDArray}``."""
    updater = trainer._updaters[0]
    arrays, layout = {}, {}

    def flatten(state, key):
        if state is None:
            return None
        if isinstance(state, mx.nd.NDArray):
            arrays[key] = state
            return 'array'
        return [flatten(s, f'{key}/{i}') for i, s in enumerate(state)]

    for index, name in names.items():
        if index in updater.states:
            layout[name] = flatten(updater.states[index], name)
    opt = trainer._optimizer
    counts = {name: {str(dev): c[index] for dev, c in opt._all_index_update_counts.items()
                     if index in c} for index, name in names.items()}
    return arrays, {'layout': layout, 'counts': counts, 'num_update': opt.num_update}


def _restore_optimizer(trainer, names, arrays, meta, source):
    def unflatten(spec, key, ctx):
        if spec is None:
            return None
        if spec == 'array':
            if key not in arrays:
                raise CheckpointError(f'{source}: optimizer state {key} missing')
            return arrays[key].as_in_context(ctx).copy()
        return tuple(unflatten(s, f'{key}/{i}', ctx) for i, s in enumerate(spec))

    by_name = {name: index for index, name in names.items()}
    unknown = sorted(set(meta['layout']) - set(by_name))
    if unknown:
        raise CheckpointError(f'{source}: optimizer states for parameters the model does not '
                              f'have: {unknown[:5]}')
    for updater, ctx in zip(trainer._updaters, trainer._contexts):
        updater.states.clear()
        updater.states_synced.clear()
        for name, spec in meta['layout'].items():
            updater.states[by_name[name]] = unflatten(spec, name, ctx)
            updater.states_synced[by_name[name]] = True
    opt = trainer._optimizer
    opt._all_index_update_counts = {0: {}}
    for name, per_device in meta['counts'].items():
        for dev, count in per_device.items():
            opt._all_index_update_counts.setdefault(int(dev), {})[by_name[name]] = count
    opt._index_update_count = opt._all_index_update_counts[0]
    opt.num_update = meta['num_update']


def _trainer_names(net, trainer):
    """Trainer index -> the parameter's first structural (checkpoint) name."""
    structural = {}
    for name, param in sorted(net._collect_params_with_prefix().items()):
        structural.setdefault(param.name, name)
    return {i: structural[p.name] for i, p in enumerate(trainer._params) if p.name in structural}


def save_checkpoint(directory, net, trainer, step, data_position, seed, config, history=(),
                    keep=3):
    """Writes ``directory/step-<step>/`` atomically and keeps the newest ``keep`` checkpoints.

    Parameters
    ----------
    directory : str
        The run's checkpoint directory.
    net : gluon.Block
    trainer : gluon.Trainer
    step : int
        Number of optimiser updates done.
    data_position : dict
        JSON-serialisable position of the data stream (to continue from the next batch).
    seed : int
        The run's seed (MXNet is reseeded from ``(seed, step)`` after saving).
    config : dict
        The run configuration (``dataclasses.asdict``), stored for reference and checks.
    history : list of dict
        Logged records so far (the loss curve survives a resume).
    keep : int
        Checkpoints to keep (older ones are deleted).

    Outputs
    -------
    str
        The checkpoint's path.
    """
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, f'step-{step:08d}')
    tmp = os.path.join(directory, f'.tmp-step-{step:08d}-{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        names = _trainer_names(net, trainer)
        save_parameters(net, os.path.join(tmp, 'model.params'))
        arrays, opt_meta = _optimizer_arrays(trainer, names)
        atomic_nd_save(os.path.join(tmp, 'optimizer.params'), arrays)
        files = {f: {'bytes': os.path.getsize(os.path.join(tmp, f)),
                     'sha1': sha1_of_file(os.path.join(tmp, f))}
                 for f in ('model.params', 'optimizer.params')}
        meta = {'format': CHECKPOINT_FORMAT, 'step': int(step), 'data_position': data_position,
                'seed': int(seed), 'rng': rng_state(), 'optimizer': opt_meta, 'config': config,
                'history': list(history), 'files': files}
        with atomic_write(os.path.join(tmp, 'meta.json')) as f:
            json.dump(meta, f)
        if os.path.exists(final):                       # re-saving a step (after a resume)
            old = final + f'.old{os.getpid()}'
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(tmp, final)
    except BaseException:           # a full disk, a second Ctrl-C: leave nothing half-written
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
    reseed_mxnet(seed, step)
    return final


def load_checkpoint(path, net, trainer):
    """Restores parameters, optimiser states and random generators from a checkpoint.

    Parameters
    ----------
    path : str
        A ``step-*`` directory.
    net : gluon.Block
        Built like the saved one, initialised on the training contexts.
    trainer : gluon.Trainer
        Over ``net``'s parameters, same optimiser type.

    Outputs
    -------
    dict
        The checkpoint's metadata (``step``, ``data_position``, ``history``, ``config``...).
    """
    meta = read_checkpoint_meta(path)
    contexts = trainer._contexts
    load_parameters(net, os.path.join(path, 'model.params'), ctx=contexts)
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    arrays = mx.nd.load(os.path.join(path, 'optimizer.params'))
    _restore_optimizer(trainer, _trainer_names(net, trainer), arrays, meta['optimizer'], path)
    set_rng_state(meta['rng'])
    reseed_mxnet(meta['seed'], meta['step'])
    return meta
