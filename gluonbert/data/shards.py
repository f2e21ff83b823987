"""The pretraining shard format: ``.npz`` files of fixed-width arrays, and their manifest.

Shard format (``part-<worker>-<index>.npz``, ``np.load(path, allow_pickle=False)``), with N
examples, ``T = max_seq_length`` and ``P = max_predictions_per_seq``:

==================  ========  =======  =================================================
key                 shape     dtype    meaning
==================  ========  =======  =================================================
input_ids           (N, T)    int32    ``[CLS] A [SEP] B [SEP]``, masked, padded with [PAD]
segment_ids         (N, T)    int32    0 for ``[CLS] A [SEP]`` and padding, 1 for ``B [SEP]``
valid_length        (N,)      int32    number of real tokens
masked_positions    (N, P)    int32    masked positions, increasing, padded with 0
masked_ids          (N, P)    int32    original ids at those positions, padded with 0
masked_weights      (N, P)    float32  1.0 for a real prediction, 0.0 for padding
nsp_label           (N,)      int32    0 = IsNext (B follows A), 1 = NotNext (B is random)
==================  ========  =======  =================================================

``nsp_label`` uses Google's and GluonNLP's convention. Every shard is written under a
temporary name (``<name>.partial``) and renamed when the whole preparation has succeeded; the
``pretraining_data.json`` manifest (config, shards, counts) is written last. A directory that a
preparation was writing into (its ``prepare_pretraining.log`` or ``.partial`` files are there)
is refused without its manifest: an interrupted preparation is never read as complete.

Shards are written by :class:`ShardWriter` (atomically, one at a time) and read with
:func:`load_shard`, which checks keys, dtypes and shapes.
"""
import json
import logging
import os
import zipfile

import numpy as np

from ..errors import DataFormatError
from .fileio import atomic_write

__all__ = ['SHARD_KEYS', 'MANIFEST_NAME', 'FORMAT_VERSION', 'PARTIAL_SUFFIX', 'LOG_NAME',
           'ShardWriter', 'write_shard', 'publish_shards', 'load_shard', 'list_shards',
           'shard_size']

_LOG = logging.getLogger('gluonbert.data.pretraining')

#: Keys of a pretraining shard, in the order batches are yielded.
SHARD_KEYS = ('input_ids', 'segment_ids', 'valid_length', 'masked_positions', 'masked_ids',
              'masked_weights', 'nsp_label')
MANIFEST_NAME = 'pretraining_data.json'
FORMAT_VERSION = 'gluonbert-pretraining-npz-v1'
#: Suffix of a shard written by a preparation that has not finished.
PARTIAL_SUFFIX = '.partial'
#: The log a preparation writes into its output directory.
LOG_NAME = 'prepare_pretraining.log'


def write_shard(path, arrays):
    """Writes one shard atomically (``np.savez`` to a temporary file, then ``os.replace``).

    Parameters
    ----------
    path : str
        Output ``.npz`` file.
    arrays : dict of np.ndarray
        The :data:`SHARD_KEYS` arrays.
    """
    with atomic_write(path, 'wb') as fobj:
        np.savez(fobj, **{key: arrays[key] for key in SHARD_KEYS})


class ShardWriter:
    """Collects examples into fixed-width arrays and writes a shard every ``examples_per_shard``.

    Parameters
    ----------
    output_dir : str
        Directory of the shards.
    prefix : str
        Shard names are ``<prefix>-<index:05d>.npz``.
    config : PretrainingDataConfig
    pad_id : int
        Padding id of ``input_ids``.
    """

    def __init__(self, output_dir, prefix, config, pad_id):
        self.output_dir, self.prefix = output_dir, prefix
        self.size, self.pad_id = config.examples_per_shard, int(pad_id)
        self.seq_len, self.num_pred = config.max_seq_length, config.max_predictions_per_seq
        self.shards = []  # (file name, number of examples)
        self._reset()

    def _reset(self):
        n, t, p = self.size, self.seq_len, self.num_pred
        self._arrays = {
            'input_ids': np.full((n, t), self.pad_id, dtype=np.int32),
            'segment_ids': np.zeros((n, t), dtype=np.int32),
            'valid_length': np.zeros((n,), dtype=np.int32),
            'masked_positions': np.zeros((n, p), dtype=np.int32),
            'masked_ids': np.zeros((n, p), dtype=np.int32),
            'masked_weights': np.zeros((n, p), dtype=np.float32),
            'nsp_label': np.zeros((n,), dtype=np.int32)}
        self._count = 0

    def add(self, example):
        """Adds one example (a dict from :func:`create_instances`)."""
        row, arr = self._count, self._arrays
        length, num = len(example['ids']), len(example['positions'])
        arr['input_ids'][row, :length] = example['ids']
        arr['segment_ids'][row, :length] = example['segments']
        arr['valid_length'][row] = length
        arr['masked_positions'][row, :num] = example['positions']
        arr['masked_ids'][row, :num] = example['originals']
        arr['masked_weights'][row, :num] = 1.0
        arr['nsp_label'][row] = example['nsp_label']
        self._count += 1
        if self._count == self.size:
            self.flush()

    def flush(self):
        """Writes the examples collected so far (if any) as the next shard, under its
        temporary name (:func:`publish_shards` gives it its own)."""
        if self._count == 0:
            return
        name = f'{self.prefix}-{len(self.shards):05d}.npz'
        arrays = {key: value[:self._count] for key, value in self._arrays.items()}
        write_shard(os.path.join(self.output_dir, name + PARTIAL_SUFFIX), arrays)
        self.shards.append((name, self._count))
        _LOG.info('wrote %s (%d examples)', name, self._count)
        self._reset()


def publish_shards(output_dir, names):
    """Renames the ``.partial`` shards ``names`` of a finished preparation to their names."""
    for name in names:
        os.replace(os.path.join(output_dir, name + PARTIAL_SUFFIX),
                   os.path.join(output_dir, name))


_DTYPES = {'input_ids': np.int32, 'segment_ids': np.int32, 'valid_length': np.int32,
           'masked_positions': np.int32, 'masked_ids': np.int32, 'masked_weights': np.float32,
           'nsp_label': np.int32}


def list_shards(source):
    """The shard files of a directory, a comma-separated string or a list.

    Parameters
    ----------
    source : str or sequence of str
        A directory (its ``pretraining_data.json`` manifest order, else sorted ``*.npz``),
        one file, ``'a.npz,b.npz'``, or a list of files.

    Outputs
    -------
    list of str
    """
    if isinstance(source, str):
        if os.path.isdir(source):
            manifest = os.path.join(source, MANIFEST_NAME)
            if os.path.isfile(manifest):
                names = _manifest_shards(manifest)
            else:
                _refuse_interrupted(source)
                names = sorted(n for n in os.listdir(source) if n.endswith('.npz'))
            files = [os.path.join(source, n) for n in names]
        else:
            files = [p for p in source.split(',') if p]
    else:
        files = list(source)
    if not files:
        raise DataFormatError(source, None, 'no .npz shards found; expected files written by '
                              'gluonbert prepare-pretraining')
    for path in files:
        if not os.path.isfile(path):
            raise DataFormatError(path, None, 'shard not found')
    return files


def _manifest_shards(manifest):
    """The shard names a manifest lists; a manifest that is not complete JSON is refused."""
    try:
        with open(manifest, encoding='utf-8') as fobj:
            names = [s['file'] for s in json.load(fobj)['shards']]
    except (ValueError, KeyError, TypeError) as err:
        raise DataFormatError(manifest, None, f'unreadable manifest ({err}); expected the '
                              'JSON gluonbert prepare-pretraining writes. Prepare the data '
                              'again') from None
    if not all(isinstance(n, str) for n in names):
        raise DataFormatError(manifest, None, 'shard names are not strings; expected the '
                              'JSON gluonbert prepare-pretraining writes')
    return names


def _refuse_interrupted(directory):
    """A directory a preparation wrote into, without its manifest, is incomplete."""
    traces = sorted(n for n in os.listdir(directory)
                    if n == LOG_NAME or n.endswith(PARTIAL_SUFFIX))
    if traces:
        raise DataFormatError(directory, None, f'no {MANIFEST_NAME}, but {traces[0]} is there: '
                              'a preparation that did not finish (interrupted, or failed). '
                              'Expected complete shards: run gluonbert prepare-pretraining '
                              'again (with --overwrite)')


def load_shard(path):
    """Loads and checks one shard (``allow_pickle=False``).

    Outputs
    -------
    dict of np.ndarray
        The :data:`~gluonbert.data.pretraining.SHARD_KEYS` arrays.
    """
    with _open_npz(path) as data:
        try:
            arrays = {key: data[key] for key in SHARD_KEYS if key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise DataFormatError(path, None, f'damaged .npz archive ({err}); expected a shard '
                                  'written by gluonbert prepare-pretraining') from None
    missing = [key for key in SHARD_KEYS if key not in arrays]
    if missing:
        raise DataFormatError(path, None, f'missing arrays {missing}; expected {list(SHARD_KEYS)}')
    num = arrays['input_ids'].shape[0]
    expect_ndim = {'valid_length': 1, 'nsp_label': 1}
    for key, arr in arrays.items():
        if arr.dtype != _DTYPES[key] or arr.ndim != expect_ndim.get(key, 2) or len(arr) != num:
            raise DataFormatError(path, None, f'{key} has dtype {arr.dtype} and shape {arr.shape}; '
                                  f'expected {np.dtype(_DTYPES[key])} with {num} rows')
    if arrays['segment_ids'].shape != arrays['input_ids'].shape or not (
            arrays['masked_ids'].shape == arrays['masked_weights'].shape
            == arrays['masked_positions'].shape):
        raise DataFormatError(path, None, 'array widths disagree; expected (N, T) ids/segments '
                              'and (N, P) masked arrays')
    return arrays


def shard_size(path):
    """Number of examples in a shard (reads only its ``nsp_label`` array)."""
    with _open_npz(path) as data:
        if 'nsp_label' not in data.files:
            raise DataFormatError(path, None, f'holds {sorted(data.files)}; expected the '
                                  f'arrays {list(SHARD_KEYS)}')
        try:
            return int(data['nsp_label'].shape[0])
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise DataFormatError(path, None, f'damaged .npz archive ({err})') from None


def _open_npz(path):
    """``np.load`` of an ``.npz`` archive, refusing anything else with a message that says
    what the file is (a text file named ``.npz`` would otherwise be reported as a pickle)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(64)
    except OSError as err:
        raise DataFormatError(path, None, f'cannot read ({err.strerror})') from None
    if not head.startswith((b'PK\x03\x04', b'PK\x05\x06')):     # zip: a file, or empty
        looks = ('text' if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head)
                 else 'empty' if not head else 'binary data')
        raise DataFormatError(path, None, f'is not an .npz (zip) archive: it starts with '
                              f'{head[:16]!r} ({looks}); expected a shard written by gluonbert '
                              'prepare-pretraining. Remove it from the shard directory')
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataFormatError(path, None, f'damaged .npz archive ({err}); expected a shard '
                              'written by gluonbert prepare-pretraining') from None


