"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a directory ``<run>/checkpoints/step-00001000/`` holding

* ``model.params``   -- the network (GluonNLP-compatible names; loadable on its own),
* ``optimizer.params`` -- optimiser moments, keyed by parameter name (``mx.nd.save``, no pickle),
* ``meta.json``       -- step, data position, random-generator states, configuration, the
  optimiser's update counters, the logged history, and the size and sha1 of both files.

It is built in a hidden temporary directory and renamed into place, so a crash never leaves a
half-written ``step-*`` directory; a damaged one (truncated file, bad JSON) fails the sha1/size
check and :func:`find_latest` skips it with a warning. Only the newest ``keep`` are kept.

MXNet cannot read back its generator state, so :func:`reseed_mxnet` seeds MXNet from
``(seed, step)`` right after each checkpoint, in the saving run and in a resumed one alike:
dropout masks after a resume are the ones the uninterrupted run drew.
"""
import json
import logging
import os
import random
import re
import shutil
import warnings

import mxnet as mx
import numpy as np

from ..data.fileio import atomic_write, sha1_of_file
from ..errors import CheckpointError
from ..model.checkpoint import atomic_nd_save, load_parameters, save_parameters

__all__ = ['save_checkpoint', 'load_checkpoint', 'find_latest', 'list_checkpoints',
           'remove_stale_temporaries', 'reseed_mxnet', 'rng_state', 'set_rng_state']

_LOG = logging.getLogger(__name__)
_NAME = re.compile(r'^step-(\d{8,})$')
_TEMPORARY = re.compile(r'^\.tmp-step-\d{8,}-\d+$|^step-\d{8,}\.old\d+$')
FORMAT = 'gluonbert-train-checkpoint/1'


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


def list_checkpoints(directory):
    """``[(step, path)]`` of the ``step-*`` directories in ``directory``, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = [(int(m.group(1)), os.path.join(directory, n))
             for n in os.listdir(directory) if (m := _NAME.match(n))]
    return sorted(found)


def remove_stale_temporaries(directory):
    """Deletes what a save killed halfway left in ``directory`` (``.tmp-step-*``,
    ``step-*.old*``); returns their names. Call it before a run starts, from one process."""
    if not os.path.isdir(directory):
        return []
    stale = sorted(n for n in os.listdir(directory) if _TEMPORARY.match(n))
    for name in stale:
        _LOG.warning('removing %s, left by an interrupted checkpoint save',
                     os.path.join(directory, name))
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return stale


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
        meta = {'format': FORMAT, 'step': int(step), 'data_position': data_position,
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


def _read_meta(path):
    """The validated ``meta.json`` of a checkpoint; raises CheckpointError if damaged."""
    meta_path = os.path.join(path, 'meta.json')
    try:
        with open(meta_path, encoding='utf-8') as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f'{meta_path}: unreadable ({err})') from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        raise CheckpointError(f'{meta_path}: format {meta.get("format")!r}; expected {FORMAT!r}')
    for name, expect in meta['files'].items():
        file = os.path.join(path, name)
        size = os.path.getsize(file) if os.path.isfile(file) else None
        if size != expect['bytes']:
            raise CheckpointError(f'{file}: {size} bytes, expected {expect["bytes"]} '
                                  '(truncated or missing)')
        if sha1_of_file(file) != expect['sha1']:
            raise CheckpointError(f'{file}: sha1 differs from the one in meta.json (damaged)')
    return meta


def find_latest(directory):
    """The newest checkpoint in ``directory`` that passes its integrity checks.

    Damaged ones (newest first) are skipped with a warning naming the problem.

    Outputs
    -------
    str or None
        Its path; None when there is no valid checkpoint.
    """
    for step, path in reversed(list_checkpoints(directory)):
        try:
            _read_meta(path)
            return path
        except CheckpointError as err:
            message = f'skipping damaged checkpoint {path}: {err}'
            _LOG.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    return None


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
    meta = _read_meta(path)
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
