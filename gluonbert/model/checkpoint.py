"""Parameter files: loading with errors that name the parameter, and atomic saving.

Checkpoints are MXNet ``.params`` files (``mx.nd.save`` of a name -> NDArray dict, no pickle)
keyed by the structural names of GluonNLP 0.10's BERT, so files move freely between GluonNLP
and gluonbert.
"""
import os

import mxnet as mx

from ..errors import CheckpointError

__all__ = ['load_parameters', 'save_parameters', 'atomic_nd_save', 'read_params', 'strip_prefix']


def atomic_nd_save(path, arrays):
    """``mx.nd.save(path, arrays)`` through a temporary file and ``os.replace``.

    A reader never sees a half-written file, and a crash leaves the previous file intact.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f'.{os.path.basename(path)}.tmp{os.getpid()}')
    try:
        mx.nd.save(tmp, arrays)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_parameters(block, path):
    """Saves every parameter of ``block`` under its structural (GluonNLP-compatible) name.

    A tied parameter is saved under each of its names, as Gluon does, so GluonNLP's strict
    loader finds every name it expects.
    """
    params = block._collect_params_with_prefix()
    atomic_nd_save(path, {name: p._reduce() for name, p in params.items()})


def strip_prefix(name):
    """A parameter name without the ``arg:``/``aux:`` prefix of ``Block.export`` files."""
    return name[4:] if name.startswith(('arg:', 'aux:')) else name


def read_params(path):
    """The arrays of an MXNet ``.params`` file, keyed by name without ``arg:``/``aux:``.

    Parameters
    ----------
    path : str
        A file written by ``mx.nd.save`` with a dictionary (``save_parameters``, ``export``).

    Outputs
    -------
    dict of str -> NDArray

    Raises :class:`CheckpointError` naming the file when it is absent, truncated, not a
    ``.params`` file, or holds an unnamed list.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: no such parameter file')
    try:
        arrays = mx.nd.load(path)
    except mx.base.MXNetError as err:
        last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CheckpointError(f'{path}: not a readable MXNet .params file (truncated or another '
                              f'format; {os.path.getsize(path)} bytes): {last}') from None
    if not isinstance(arrays, dict):
        raise CheckpointError(f'{path}: holds an unnamed list of arrays; expected a '
                              'name -> array dictionary (Block.save_parameters format)')
    return {strip_prefix(k): v for k, v in arrays.items()}


def _read(path_or_arrays):
    if isinstance(path_or_arrays, dict):
        return dict(path_or_arrays), '<dict>'
    return read_params(path_or_arrays), os.fspath(path_or_arrays)


def load_parameters(block, path_or_arrays, ctx=None, allow_missing=False, ignore_extra=False,
                    cast_dtype=False, source=None):
    """Loads a parameter file (or a name -> NDArray dict) into ``block``.

    Unlike ``Block.load_parameters``, every mismatch is reported before anything is changed,
    as a :class:`CheckpointError` naming the parameter, the file, and both shapes.

    Parameters
    ----------
    block : gluon.Block
    path_or_arrays : str or dict
        A ``.params`` file or a dict of arrays keyed by structural names.
    ctx : Context or list of Context, optional
        Where to place the parameters (default: where they are, else CPU).
    allow_missing : bool
        Leave parameters absent from the file as they are (they must then be initialised).
    ignore_extra : bool
        Ignore names in the file that the block does not have (e.g. the MLM head when loading
        a classifier's encoder).
    cast_dtype : bool
        Cast loaded arrays to the parameters' dtypes.
    source : str, optional
        The file ``path_or_arrays`` (a dict) was read from, for messages.
    """
    arrays, read_from = _read(path_or_arrays)
    source = source or read_from
    params = block._collect_params_with_prefix()
    # One Parameter may have several names (weight tying): present under any name is enough.
    by_param = {}
    for name, param in params.items():
        by_param.setdefault(id(param), (param, []))[1].append(name)
    problems = []
    to_load = []
    for param, names in by_param.values():
        found = [n for n in names if n in arrays]
        if not found:
            if not allow_missing:
                problems.append(f'missing parameter {names[0]} (shape {param.shape})')
            continue
        value = arrays[found[0]]
        differs = [n for n in found[1:] if tuple(arrays[n].shape) != tuple(value.shape)
                   or not (arrays[n] == value).min()]
        if differs:
            problems.append(f'parameters {found[0]} and {differs[0]} are one (tied) parameter '
                            'of the model but differ in the file; expected equal copies (an '
                            'untied checkpoint needs a model with tie_word_embeddings=False)')
            continue
        expected = param.shape
        known = expected is not None and all(d > 0 for d in expected)
        if known and tuple(value.shape) != tuple(expected):
            problems.append(f'parameter {found[0]}: the file has shape {tuple(value.shape)}, '
                            f'the model expects {tuple(expected)}')
            continue
        to_load.append((param, value))
    extra = sorted(set(arrays) - set(params))
    if extra and not ignore_extra:
        problems.append(f'{len(extra)} names in the file are not in the model '
                        f'(first: {", ".join(extra[:5])}); pass ignore_extra=True to skip them')
    if problems:
        shown = '\n  '.join(problems[:20])
        more = f'\n  ... and {len(problems) - 20} more' if len(problems) > 20 else ''
        raise CheckpointError(f'{source} does not fit {type(block).__name__}:\n  {shown}{more}')
    for param, value in to_load:
        if cast_dtype:
            value = value.astype(param.dtype)
        target = ctx if ctx is not None else (param.list_ctx() if param._data is not None
                                              else mx.cpu())
        param._load_init(value, target, cast_dtype=cast_dtype)
