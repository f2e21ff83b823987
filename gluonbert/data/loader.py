"""Batches of pretraining examples from ``.npz`` shards, resumable at any batch.

:class:`PretrainingBatches` reads the shards written by
:func:`~gluonbert.data.pretraining.prepare_pretraining_data` and yields
:class:`PretrainingBatch` tuples. It keeps its position (``epoch``, ``batch_index``: the next
batch to yield), so a training loop can save ``state_dict()`` in a checkpoint and continue with
exactly the batches it would have seen.

Order
-----
With ``shuffle``, epoch ``e`` visits this worker's shards in the order of a permutation drawn
from ``(seed, e)`` and the examples of shard ``s`` in a permutation drawn from ``(seed, e, s)``;
batches run across shard boundaries. Without ``shuffle`` shards and examples keep file order.
Only the shards a batch needs are read, so memory stays at about one shard.

Workers
-------
With ``num_workers`` data-parallel workers, worker ``rank`` takes shards ``rank``,
``rank + num_workers``, ... when there are at least as many shards as workers (workers may then
get different numbers of batches: prepare a multiple of ``num_workers`` shards of equal size
for equal counts); otherwise every worker reads every shard and takes the examples whose global
index is ``rank`` modulo ``num_workers``.

Dynamic masking
---------------
Shards hold masked ``input_ids``, but ``masked_ids`` keeps the original token at every masked
position, so the unmasked sequence is restored exactly
(``ids[masked_positions] = masked_ids`` where ``masked_weights > 0``). With a ``masker``, each
batch is restored and masked again with a random stream drawn from
``(seed, epoch, batch_index)``: new masks every epoch, still reproducible and resumable. NSP
pairs and segments stay as prepared.
"""
import typing

import numpy as np

from ..errors import ConfigError
from .shards import SHARD_KEYS, list_shards, load_shard, shard_size

__all__ = ['PretrainingBatch', 'PretrainingBatches', 'list_shards', 'load_shard',
           'restore_unmasked']


class PretrainingBatch(typing.NamedTuple):
    """One batch; numpy arrays (or ``mx.nd.NDArray`` with ``as_ndarray``).

    Attributes
    ----------
    input_ids : int32, shape (B, T)
    segment_ids : int32, shape (B, T)
    valid_length : int32, shape (B,)
    masked_positions : int32, shape (B, P)
    masked_ids : int32, shape (B, P)
        Original ids at the masked positions (the MLM targets).
    masked_weights : float32, shape (B, P)
        1.0 for real predictions, 0.0 for padding.
    nsp_label : int32, shape (B,)
        0 = IsNext, 1 = NotNext.
    """
    input_ids: typing.Any
    segment_ids: typing.Any
    valid_length: typing.Any
    masked_positions: typing.Any
    masked_ids: typing.Any
    masked_weights: typing.Any
    nsp_label: typing.Any

    def d2l(self):
        """The batch in the order of d2l.ai's pretraining loader (``_WikiTextDataset``).

        d2l yields ``(tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_Y,
        nsp_y)``: the weights before the targets, where this tuple has ``masked_ids`` before
        ``masked_weights``. A loop transcribed from d2l's ``train_bert`` unpacks this.

        Outputs
        -------
        tuple
            ``(input_ids, segment_ids, valid_length, masked_positions, masked_weights,
            masked_ids, nsp_label)``.
        """
        return (self.input_ids, self.segment_ids, self.valid_length, self.masked_positions,
                self.masked_weights, self.masked_ids, self.nsp_label)


def restore_unmasked(input_ids, masked_positions, masked_ids, masked_weights):
    """Puts the original ids back at the masked positions.

    Inputs
    ------
    input_ids : int32, (B, T); masked_positions, masked_ids : int32, (B, P);
    masked_weights : float32, (B, P)

    Outputs
    -------
    np.ndarray, int32, (B, T)
        A copy of ``input_ids`` without masks.
    """
    out = np.array(input_ids, dtype=np.int32, copy=True)
    rows = np.broadcast_to(np.arange(len(out))[:, None], masked_positions.shape)
    real = masked_weights > 0
    out[rows[real], masked_positions[real]] = masked_ids[real]
    return out


class PretrainingBatches:
    """Deterministic, resumable batches of pretraining examples (see the module docstring).

    Parameters
    ----------
    files : str or sequence of str
        Shards, or a directory of them (see :func:`list_shards`).
    batch_size : int
        Examples per batch, B.
    rank, num_workers : int
        This worker's index and the number of data-parallel workers.
    shuffle : bool
        Shuffle shards and examples every epoch.
    seed : int
        Seed of the shuffling and of dynamic masking.
    drop_last : bool
        Drop the last, incomplete batch of an epoch.
    masker : gluonbert.data.masking.Masker or None
        Re-mask every batch on the fly (dynamic masking). Its ``max_predictions_per_seq`` must
        not exceed the shards' P.
    as_ndarray : bool
        Yield ``mx.nd.NDArray`` instead of numpy arrays.

    Outputs
    -------
    iterator of PretrainingBatch
        ``iter(batches)`` continues from the current position to the end of the epoch and
        then moves the position to batch 0 of the next epoch.
    """

    def __init__(self, files, batch_size, rank=0, num_workers=1, shuffle=True, seed=0,
                 drop_last=False, masker=None, as_ndarray=False):
        if batch_size < 1:
            raise ConfigError(f'batch_size={batch_size}: expected >= 1')
        if not 0 <= rank < num_workers:
            raise ConfigError(f'rank={rank}: expected 0 <= rank < num_workers={num_workers}')
        all_files = list_shards(files)
        self.batch_size, self.rank, self.num_workers = int(batch_size), rank, num_workers
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.masker, self.as_ndarray = masker, as_ndarray
        self._split_examples = len(all_files) < num_workers
        if self._split_examples:
            self.files = all_files
        else:
            self.files = all_files[rank::num_workers]
        sizes = [shard_size(f) for f in all_files]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        if self._split_examples:
            self._sizes = [len(self._my_rows(o, n)) for o, n in zip(offsets, sizes)]
            self._offsets = list(offsets)
        else:
            self._sizes = sizes[rank::num_workers]
            self._offsets = list(offsets[rank::num_workers])
        self.num_examples = int(sum(self._sizes))
        self.epoch, self.batch_index = 0, 0

    def _my_rows(self, offset, size):
        rows = np.arange(size)
        if self._split_examples:
            rows = rows[(offset + rows) % self.num_workers == self.rank]
        return rows

    def __len__(self):
        """Batches per epoch for this worker."""
        if self.drop_last:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)

    def state_dict(self):
        """The position (next batch to yield) and the settings it depends on."""
        return {'epoch': self.epoch, 'batch_index': self.batch_index, 'seed': self.seed,
                'batch_size': self.batch_size, 'rank': self.rank,
                'num_workers': self.num_workers, 'shuffle': self.shuffle,
                'num_examples': self.num_examples}

    def load_state_dict(self, state):
        """Moves to the position saved by :meth:`state_dict`; settings must be the same."""
        for key in ('seed', 'batch_size', 'rank', 'num_workers', 'shuffle', 'num_examples'):
            if key in state and state[key] != getattr(self, key):
                raise ConfigError(f'loader state has {key}={state[key]!r} but this loader has '
                                  f'{getattr(self, key)!r}; expected the same data and settings '
                                  'to resume')
        if not 0 <= int(state['batch_index']) <= len(self):
            raise ConfigError(f'loader state batch_index={state["batch_index"]}: expected 0..'
                              f'{len(self)}')
        self.epoch, self.batch_index = int(state['epoch']), int(state['batch_index'])

    def seek(self, num_batches):
        """Moves to the position after ``num_batches`` batches from the start of epoch 0.

        Every worker of a data-parallel job consumes the same number of batches per step, so
        a worker resuming from another rank's checkpoint finds its own position this way.
        """
        per_epoch = len(self)
        if per_epoch == 0:
            raise ConfigError(f'rank {self.rank}: no batches to read (fewer examples than '
                              'workers?)')
        self.epoch, self.batch_index = divmod(int(num_batches), per_epoch)

    def __iter__(self):
        epoch, start = self.epoch, self.batch_index
        for index, batch in enumerate(self.iterate(epoch, start), start):
            if index + 1 >= len(self):
                self.epoch, self.batch_index = epoch + 1, 0
            else:
                self.batch_index = index + 1
            yield batch
        if self.epoch == epoch:  # an empty remainder
            self.epoch, self.batch_index = epoch + 1, 0

    def _order(self, epoch):
        """Shard visiting order and, lazily, the row order of each shard."""
        if not self.shuffle:
            return list(range(len(self.files)))
        return list(np.random.default_rng([self.seed, epoch]).permutation(len(self.files)))

    def _rows(self, epoch, shard):
        rows = self._my_rows(self._offsets[shard], shard_size(self.files[shard])) \
            if self._split_examples else np.arange(self._sizes[shard])
        if self.shuffle:
            rows = rows[np.random.default_rng([self.seed, epoch, shard]).permutation(len(rows))]
        return rows

    def iterate(self, epoch, start_batch=0):
        """Yields the batches of ``epoch`` from ``start_batch`` on, without moving the position.

        Parameters
        ----------
        epoch : int
        start_batch : int

        Outputs
        -------
        iterator of PretrainingBatch
        """
        skip = start_batch * self.batch_size
        stop = len(self) * self.batch_size if self.drop_last else self.num_examples
        buf, cursor, seen, batch_index = None, 0, 0, start_batch
        for shard in self._order(epoch):
            if seen >= stop:
                break
            size = self._sizes[shard]
            begin, end = max(0, skip - seen), min(size, stop - seen)
            seen += size
            if begin >= end:
                continue
            rows = self._rows(epoch, shard)[begin:end]
            chunk = {k: v[rows] for k, v in load_shard(self.files[shard]).items()}
            if buf is None or cursor >= len(buf['nsp_label']):
                buf = chunk
            else:
                buf = {k: np.concatenate([buf[k][cursor:], chunk[k]]) for k in SHARD_KEYS}
            cursor = 0
            while len(buf['nsp_label']) - cursor >= self.batch_size:
                batch = {k: v[cursor:cursor + self.batch_size] for k, v in buf.items()}
                cursor += self.batch_size
                yield self._finish(batch, epoch, batch_index)
                batch_index += 1
        if buf is not None and cursor < len(buf['nsp_label']):
            yield self._finish({k: v[cursor:] for k, v in buf.items()}, epoch, batch_index)

    def _finish(self, arrays, epoch, batch_index):
        if self.masker is not None:
            arrays = self._remask(arrays, epoch, batch_index)
        batch = PretrainingBatch(*(arrays[k] for k in SHARD_KEYS))
        if self.as_ndarray:
            import mxnet as mx
            batch = PretrainingBatch(*(mx.nd.array(a, dtype=a.dtype) for a in batch))
        return batch

    def _remask(self, arrays, epoch, batch_index):
        width = arrays['masked_positions'].shape[1]
        wanted = self.masker.max_predictions_per_seq
        if wanted > width:
            raise ConfigError(f'masker.max_predictions_per_seq={wanted} exceeds the '
                              f'{width} masked positions of the shards')
        original = restore_unmasked(arrays['input_ids'], arrays['masked_positions'],
                                    arrays['masked_ids'], arrays['masked_weights'])
        rng = np.random.default_rng([self.seed, epoch, batch_index, 1])
        out = dict(arrays)
        out['input_ids'] = original.copy()
        out['masked_positions'] = np.zeros_like(arrays['masked_positions'])
        out['masked_ids'] = np.zeros_like(arrays['masked_ids'])
        out['masked_weights'] = np.zeros_like(arrays['masked_weights'])
        for row, length in enumerate(arrays['valid_length']):
            masked = self.masker.mask(original[row, :length], rng)
            num = len(masked.positions)
            out['input_ids'][row, :length] = masked.input_ids
            out['masked_positions'][row, :num] = masked.positions
            out['masked_ids'][row, :num] = masked.originals
            out['masked_weights'][row, :num] = 1.0
        return out
