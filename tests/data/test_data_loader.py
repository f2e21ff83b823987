"""PretrainingBatches: order, worker split, exact resume, dynamic masking."""
import os

import numpy as np
import pytest

from gluonbert.data.loader import PretrainingBatches, restore_unmasked
from gluonbert.data.masking import Masker
from gluonbert.data.shards import SHARD_KEYS, list_shards, load_shard, write_shard
from gluonbert.errors import ConfigError, DataFormatError

T, P = 16, 4


def fake_shards(directory, sizes, vocab):
    """Shards of masked random sequences; ``nsp_label`` holds each example's global index."""
    masker = Masker.from_vocab(vocab, max_predictions_per_seq=P)
    rng = np.random.default_rng(0)
    ordinary = [vocab[f't{i}'] for i in range(60)]
    paths, start = [], 0
    for index, size in enumerate(sizes):
        arrays = {'input_ids': np.zeros((size, T), np.int32),
                  'segment_ids': np.zeros((size, T), np.int32),
                  'valid_length': np.zeros(size, np.int32),
                  'masked_positions': np.zeros((size, P), np.int32),
                  'masked_ids': np.zeros((size, P), np.int32),
                  'masked_weights': np.zeros((size, P), np.float32),
                  'nsp_label': np.zeros(size, np.int32)}
        for row in range(size):
            length = int(rng.integers(8, T + 1))
            ids = np.array([vocab['[CLS]']] + list(rng.choice(ordinary, length - 2)) +
                           [vocab['[SEP]']], dtype=np.int32)
            masked = masker.mask(ids, rng)
            arrays['input_ids'][row, :length] = masked.input_ids
            arrays['valid_length'][row] = length
            arrays['segment_ids'][row, length // 2:length] = 1
            num = len(masked.positions)
            arrays['masked_positions'][row, :num] = masked.positions
            arrays['masked_ids'][row, :num] = masked.originals
            arrays['masked_weights'][row, :num] = 1
            arrays['nsp_label'][row] = start + row  # identifies the example
        path = os.path.join(directory, f'part-000-{index:05d}.npz')
        write_shard(path, arrays)
        paths.append(path)
        start += size
    return paths


def ids_of(batches):
    return [int(x) for b in batches for x in b.nsp_label]


@pytest.fixture
def shards(tmp_path, vocab):
    return fake_shards(str(tmp_path), [10, 7, 13, 5], vocab)


def test_epoch_covers_everything_once_and_shuffles_per_epoch(shards):
    loader = PretrainingBatches(shards, batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 9 and loader.num_examples == 35
    first = list(loader)
    assert [len(b.nsp_label) for b in first] == [4] * 8 + [3]
    assert sorted(ids_of(first)) == list(range(35))
    assert loader.state_dict()['epoch'] == 1 and loader.state_dict()['batch_index'] == 0
    second = list(loader)
    assert sorted(ids_of(second)) == list(range(35)) and ids_of(second) != ids_of(first)
    assert ids_of(PretrainingBatches(shards, 4, seed=3).iterate(0)) == ids_of(first)
    assert ids_of(PretrainingBatches(shards, 4, seed=4).iterate(0)) != ids_of(first)
    plain = PretrainingBatches(shards, 4, shuffle=False, drop_last=True)
    assert ids_of(plain) == list(range(32)) and len(plain) == 8
    batch = first[0]
    assert batch.input_ids.shape == (4, T) and batch.input_ids.dtype == np.int32
    assert batch.masked_weights.dtype == np.float32 and batch.masked_ids.shape == (4, P)


def test_resume_mid_epoch_is_exact(shards):
    loader = PretrainingBatches(shards, batch_size=4, seed=5)
    reference = list(loader.iterate(0)) + list(loader.iterate(1))
    taken = []
    for batch in loader:
        taken.append(batch)
        if len(taken) == 6:
            break
    state = loader.state_dict()
    assert (state['epoch'], state['batch_index']) == (0, 6)
    resumed = PretrainingBatches(shards, batch_size=4, seed=5)
    resumed.load_state_dict(state)
    taken += list(resumed) + list(resumed)
    assert len(taken) == len(reference)
    for got, want in zip(taken, reference):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match='batch_size=4'):
        PretrainingBatches(shards, batch_size=8, seed=5).load_state_dict(state)


@pytest.mark.parametrize('num_workers', [2, 3, 6])
def test_workers_partition_the_data(shards, num_workers):
    seen = []
    for rank in range(num_workers):
        loader = PretrainingBatches(shards, 3, rank=rank, num_workers=num_workers, seed=1)
        mine = ids_of(loader)
        assert len(mine) == loader.num_examples
        seen += mine
    assert sorted(seen) == list(range(35))
    if num_workers <= 4:  # whole shards per worker
        loader = PretrainingBatches(shards, 3, rank=1, num_workers=num_workers)
        assert loader.files == shards[1::num_workers]
    else:  # fewer shards than workers: examples are split
        loader = PretrainingBatches(shards, 3, rank=1, num_workers=num_workers, shuffle=False)
        assert ids_of(loader) == list(range(1, 35, num_workers))


def test_dynamic_masking(shards, vocab):
    masker = Masker.from_vocab(vocab, max_predictions_per_seq=P)
    loader = PretrainingBatches(shards, 5, seed=2, masker=masker)
    static = PretrainingBatches(shards, 5, seed=2)
    epoch0, epoch1 = list(loader.iterate(0)), list(loader.iterate(1))
    specials = [vocab[t] for t in ('[CLS]', '[SEP]', '[PAD]')]
    changed = 0
    for dyn, ref in zip(epoch0, static.iterate(0)):
        original = restore_unmasked(ref.input_ids, ref.masked_positions, ref.masked_ids,
                                    ref.masked_weights)
        again = restore_unmasked(dyn.input_ids, dyn.masked_positions, dyn.masked_ids,
                                 dyn.masked_weights)
        np.testing.assert_array_equal(original, again)  # same text, new masks
        real = dyn.masked_weights > 0
        rows = np.broadcast_to(np.arange(len(real))[:, None], real.shape)[real]
        np.testing.assert_array_equal(dyn.masked_ids[real],
                                      original[rows, dyn.masked_positions[real]])
        assert not np.isin(dyn.masked_ids[real], specials).any()
        np.testing.assert_array_equal(dyn.nsp_label, ref.nsp_label)
        changed += not np.array_equal(dyn.masked_positions, ref.masked_positions)
    assert changed >= len(epoch0) - 1
    assert any(not np.array_equal(a.masked_positions, b.masked_positions)
               for a, b in zip(epoch0, epoch1))
    resumed = PretrainingBatches(shards, 5, seed=2, masker=masker)
    resumed.load_state_dict({'epoch': 1, 'batch_index': 3})
    np.testing.assert_array_equal(next(iter(resumed)).input_ids, epoch1[3].input_ids)
    nd = next(iter(PretrainingBatches(shards, 5, seed=2, masker=masker, as_ndarray=True)))
    assert type(nd.input_ids).__name__ == 'NDArray'
    np.testing.assert_array_equal(nd.input_ids.asnumpy(), epoch0[0].input_ids)


def test_list_shards_and_bad_shards(shards, tmp_path):
    assert list_shards(str(tmp_path)) == shards
    assert list_shards(','.join(shards[:2])) == shards[:2]
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(DataFormatError, match='no .npz shards'):
        list_shards(str(tmp_path / 'empty'))
    arrays = load_shard(shards[0])
    arrays['masked_weights'] = arrays['masked_weights'].astype(np.float64)
    bad = str(tmp_path / 'bad.npz')
    np.savez(bad, **arrays)
    with pytest.raises(DataFormatError, match='masked_weights has dtype float64'):
        load_shard(bad)
    np.savez(bad, **{k: v for k, v in arrays.items() if k != 'nsp_label'})
    with pytest.raises(DataFormatError, match="missing arrays \\['nsp_label'\\]"):
        load_shard(bad)
    with open(bad, 'wb') as fobj:
        fobj.write(b'not a zip')
    with pytest.raises(DataFormatError, match=r'is not an .npz \(zip\) archive'):
        load_shard(bad)
    assert sorted(SHARD_KEYS) == sorted(load_shard(shards[1]))


def test_dynamic_masking_needs_room(shards, vocab):
    masker = Masker.from_vocab(vocab, max_predictions_per_seq=P + 1)
    with pytest.raises(ConfigError, match='exceeds the 4 masked positions'):
        next(iter(PretrainingBatches(shards, 5, masker=masker)))
