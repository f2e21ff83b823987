"""Checks of the arrays given to the BERT blocks, run in Python before any graph executes.

A hybridized block runs a cached MXNet graph in which nothing can raise: ``Embedding`` clips an
out-of-range id to the last row, a float id is truncated, a ``valid_length`` of 0 masks every
key. So the blocks that take token ids (:class:`~gluonbert.model.BERTEncoder`,
:class:`~gluonbert.model.BERTModel`, :class:`~gluonbert.model.BERTClassifier`,
:class:`~gluonbert.model.MLMDecoder`, and an exported model loaded with
:func:`~gluonbert.model.import_exported`) check their NDArray inputs in ``forward``, which
Gluon calls with the caller's arrays both imperatively and before it runs the cached graph.

Cost: shapes are free; values are checked on the host. The id arrays are small (``B * T``
integers: 16 KB at B=32, T=128), so copying them with ``asnumpy`` and reducing them with numpy
costs a few microseconds, and the copy waits only for the ids themselves (already written by
the data pipeline), not for the model's queued work. Reductions on the device would need the
same wait for their result plus one MXNet operator launch per reduction, which costs more on
CPU. ``benchmarks/input_checks.py`` measures it.

Nested blocks do not check again: the outermost checking block marks the thread while its own
forward runs (:func:`checked_scope`).
"""
import contextlib
import threading

import numpy as np

from ..errors import ConfigError, InputError

__all__ = ['check_inputs', 'check_masked_positions', 'needs_check', 'checked_scope',
           'refuse_numpy_mode']

_NUMPY_MODE = ("gluonbert's blocks run in MXNet 1.x's classic NDArray mode: call "
               'mx.npx.reset_np() before building the model (d2l scripts call npx.set_np() at '
               'the top), and pass mx.nd arrays (x.as_nd_ndarray() converts an mx.np array)')


def refuse_numpy_mode(block):
    """Raises :class:`ConfigError` when MXNet's NumPy mode (``npx.set_np()``, d2l's mode) is on.

    Parameters are created as ``mx.np`` arrays in that mode, which the blocks' operators do
    not take: refused once, where the block is built, rather than deep inside MXNet later.
    """
    import mxnet as mx
    if mx.util.is_np_array():
        raise ConfigError(f'{block}: MXNet NumPy mode is on (npx.set_np()); ' + _NUMPY_MODE)

_STATE = threading.local()


def needs_check(array):
    """True for an NDArray input when no enclosing block has checked the inputs already.

    An ``mx.np`` array (NumPy mode) is refused with :class:`InputError`.
    """
    import mxnet as mx
    if isinstance(array, mx.np.ndarray):
        raise InputError(f'got an mx.np.ndarray {array.shape}; ' + _NUMPY_MODE)
    return isinstance(array, mx.nd.NDArray) and not getattr(_STATE, 'depth', 0)


@contextlib.contextmanager
def checked_scope():
    """Marks the inputs of the current thread's forward pass as checked (nested blocks skip)."""
    _STATE.depth = getattr(_STATE, 'depth', 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def _integer_values(name, array):
    """The values of ``array`` on the host as int64; refuses non-integer values."""
    values = array.asnumpy()
    if values.dtype.kind == 'f':
        fraction = values != np.floor(values)       # also True for NaN; inf fails the range
        if fraction.any():
            bad = values[fraction].flat[0]
            raise InputError(f'{name} contains {bad!r} (dtype {values.dtype}); expected '
                             'integer values (ids, lengths and positions are whole numbers)')
        if not np.isfinite(values).all():
            raise InputError(f'{name} contains {values[~np.isfinite(values)].flat[0]!r}; '
                             'expected integer values')
    elif values.dtype.kind not in 'iub':
        raise InputError(f'{name} has dtype {values.dtype}; expected an integer or float array')
    return values.astype(np.int64, copy=False)


def _check_range(name, values, low, high, what, detail=''):
    if values.size == 0:
        return
    smallest, largest = values.min(), values.max()
    if smallest < low or largest >= high:
        bad = largest if largest >= high else smallest
        raise InputError(f'{name} contains {int(bad)}; expected {what} in [{low}, {high})'
                         + (f' ({detail})' if detail else ''))


def check_inputs(config, token_ids, segment_ids, valid_length=None, masked_positions=None):
    """Raises :class:`InputError` unless the arrays fit ``config``.

    Parameters
    ----------
    config : BERTConfig
    token_ids : (B, T) NDArray
        Integer values (any dtype) in ``[0, vocab_size)``; ``1 <= T <= max_length``, ``B >= 1``.
    segment_ids : (B, T) NDArray
        Integer values in ``[0, token_type_vocab_size)``.
    valid_length : (B,) NDArray or None
        Integer values in ``[1, T]``.
    masked_positions : (B, P) NDArray or None
        Integer values in ``[0, T)``.
    """
    shape = tuple(token_ids.shape)
    if len(shape) != 2:
        raise InputError(f'token_ids has shape {shape}; expected (batch, length)')
    batch, length = shape
    if batch == 0:
        raise InputError(f'token_ids has shape {shape}: an empty batch; expected at least one '
                         'sequence')
    if length == 0:
        raise InputError(f'token_ids has shape {shape}: sequences of length 0; expected at '
                         'least one token ([CLS])')
    if tuple(segment_ids.shape) != shape:
        raise InputError(f'segment_ids has shape {tuple(segment_ids.shape)} but token_ids has '
                         f'shape {shape}; expected the same (batch, length)')
    if length > config.max_length:
        raise InputError(f'sequence length {length} exceeds the position table of '
                         f'{config.max_length} rows (config.max_length); truncate the inputs '
                         f'to at most {config.max_length} tokens')
    if valid_length is not None and tuple(valid_length.shape) != (batch,):
        raise InputError(f'valid_length has shape {tuple(valid_length.shape)}; expected '
                         f'({batch},)')
    _check_range('token_ids', _integer_values('token_ids', token_ids), 0, config.vocab_size,
                 'ids', f'vocab_size={config.vocab_size}')
    _check_range('segment_ids', _integer_values('segment_ids', segment_ids), 0,
                 config.token_type_vocab_size, 'ids',
                 f'token_type_vocab_size={config.token_type_vocab_size}: segment A is 0, B is 1')
    if valid_length is not None:
        lengths = _integer_values('valid_length', valid_length)
        if lengths.min() < 1 or lengths.max() > length:
            bad = lengths.min() if lengths.min() < 1 else lengths.max()
            raise InputError(f'valid_length contains {int(bad)}; expected values in '
                             f'[1, {length}] (at least [CLS], at most the padded length {length})')
    if masked_positions is not None:
        check_masked_positions((batch, length), masked_positions)


def check_masked_positions(sequence_shape, masked_positions):
    """Raises :class:`InputError` unless ``masked_positions`` is ``(B, P)`` within ``[0, T)``.

    Parameters
    ----------
    sequence_shape : tuple
        ``(B, T, ...)`` of the encoded sequence.
    masked_positions : (B, P) NDArray
    """
    batch, length = sequence_shape[0], sequence_shape[1]
    if masked_positions.ndim != 2 or masked_positions.shape[0] != batch:
        raise InputError(f'masked_positions has shape {masked_positions.shape}; '
                         f'expected ({batch}, num_masked)')
    _check_range('masked_positions', _integer_values('masked_positions', masked_positions), 0,
                 length, 'positions', f'sequences of length {length}')
