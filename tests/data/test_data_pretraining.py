"""Pretraining examples: masking statistics, NSP semantics, shard format, determinism, CLI.

The corpus is made of numbered tokens ``t0 .. t59``: every document is a run of consecutive
numbers (mod 60) starting at a random offset, cut into sentences. A restored (unmasked)
segment must therefore be a consecutive run, which checks every masked id against the
original token at its position, and B continues A exactly when it is the true next segment.
"""
import json
import os

import numpy as np
import pytest

from gluonbert.cli import main
from gluonbert.data.loader import restore_unmasked
from gluonbert.data.masking import Masker
from gluonbert.data.pretraining import PretrainingDataConfig, prepare_pretraining_data
from gluonbert.data.shards import SHARD_KEYS, load_shard
from gluonbert.errors import ConfigError

NUM = 60


def numbered_corpus(path, num_docs=60, sentences=(4, 40), seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(num_docs):
        position = int(rng.integers(NUM))
        for _ in range(int(rng.integers(*sentences))):
            length = int(rng.integers(3, 8))
            lines.append(' '.join(f't{(position + k) % NUM}' for k in range(length)))
            position += length
        lines.append('')
    path.write_text('\n'.join(lines), encoding='utf-8')
    return str(path)


def load_all(directory):
    with open(os.path.join(directory, 'pretraining_data.json'), encoding='utf-8') as fobj:
        manifest = json.load(fobj)
    shards = [load_shard(os.path.join(directory, s['file'])) for s in manifest['shards']]
    return manifest, {k: np.concatenate([s[k] for s in shards]) for k in SHARD_KEYS}


def numbers(vocab, ids):
    return [int(vocab.idx_to_token[i][1:]) for i in ids]


def is_run(values):
    return all((b - a) % NUM == 1 for a, b in zip(values, values[1:]))


@pytest.fixture(scope='module')
def prepared(tmp_path_factory, vocab_tokens):
    """About 5,000 examples of length 64 from the numbered corpus (prepared once)."""
    from gluonbert.data.tokenizer import load_vocab
    root = tmp_path_factory.mktemp('pretrain')
    (root / 'vocab.txt').write_text('\n'.join(vocab_tokens) + '\n', encoding='utf-8')
    vocab = load_vocab(str(root / 'vocab.txt'))
    # long documents: few chunks are a single sentence (those are always NotNext)
    corpus = numbered_corpus(root / 'corpus.txt', num_docs=20, sentences=(300, 500))
    config = PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=12,
                                   short_seq_prob=0.0, dupe_factor=8, seed=7,
                                   examples_per_shard=1500, nsp_pool_documents=20)
    manifest = prepare_pretraining_data(corpus, vocab, str(root / 'out'), config, progress=False)
    return vocab, corpus, config, root, manifest


def test_shard_format(prepared):
    vocab, _, config, root, manifest = prepared
    names = sorted(os.listdir(root / 'out'))
    sizes = [s['num_examples'] for s in manifest['shards']]
    assert names == [f'part-000-{i:05d}.npz' for i in range(len(sizes))] + \
        ['prepare_pretraining.log', 'pretraining_data.json']  # and no temporary files
    assert len(sizes) >= 3 and set(sizes[:-1]) == {1500} and 0 < sizes[-1] <= 1500
    with np.load(root / 'out' / 'part-000-00000.npz', allow_pickle=False) as data:
        assert sorted(data.files) == sorted(SHARD_KEYS)
        n, t, p = 1500, config.max_seq_length, config.max_predictions_per_seq
        expect = {'input_ids': ((n, t), np.int32), 'segment_ids': ((n, t), np.int32),
                  'valid_length': ((n,), np.int32), 'masked_positions': ((n, p), np.int32),
                  'masked_ids': ((n, p), np.int32), 'masked_weights': ((n, p), np.float32),
                  'nsp_label': ((n,), np.int32)}
        for key, (shape, dtype) in expect.items():
            assert data[key].shape == shape and data[key].dtype == dtype, key
    assert manifest['num_examples'] == sum(sizes) > 3500
    assert manifest['num_documents'] == 20 and manifest['config']['seed'] == 7
    assert 'wrote part-000-00002.npz' in (root / 'out' / 'prepare_pretraining.log').read_text()


def test_layout_and_masks_restore_to_original_runs(prepared):
    vocab, _, config, root, _ = prepared
    _, a = load_all(root / 'out')
    cls, sep, pad, mask = (vocab[t] for t in ('[CLS]', '[SEP]', '[PAD]', '[MASK]'))
    restored = restore_unmasked(a['input_ids'], a['masked_positions'], a['masked_ids'],
                                a['masked_weights'])
    continues = {0: [], 1: []}
    for i in range(len(restored)):
        length = a['valid_length'][i]
        ids, seg = restored[i], a['segment_ids'][i]
        seps = np.flatnonzero(ids[:length] == sep)
        assert ids[0] == cls and len(seps) == 2 and seps[1] == length - 1
        assert (ids[length:] == pad).all() and (seg[length:] == 0).all()
        assert (seg[:seps[0] + 1] == 0).all() and (seg[seps[0] + 1:length] == 1).all()
        seg_a, seg_b = numbers(vocab, ids[1:seps[0]]), numbers(vocab, ids[seps[0] + 1:seps[1]])
        assert seg_a and seg_b and is_run(seg_a) and is_run(seg_b), i
        if length < config.max_seq_length:  # not truncated
            continues[int(a['nsp_label'][i])].append((seg_b[0] - seg_a[-1]) % NUM == 1)
    assert all(continues[0]) and len(continues[0]) > 100  # IsNext: B follows A
    assert np.mean(continues[1]) < 0.1  # NotNext: B from elsewhere


def test_mask_statistics(prepared):
    vocab, _, config, root, manifest = prepared
    _, a = load_all(root / 'out')
    specials = [vocab[t] for t in ('[CLS]', '[SEP]', '[PAD]', '[MASK]', '[UNK]', '[unused0]')]
    real = a['masked_weights'] > 0
    counts = real.sum(axis=1)
    expected = np.minimum(config.max_predictions_per_seq,
                          np.maximum(1, np.round(a['valid_length'] * 0.15).astype(int)))
    np.testing.assert_array_equal(counts, expected)
    assert abs(counts.sum() / a['valid_length'].sum() - 0.15) < 0.01
    assert abs(manifest['masked_fraction'] - counts.sum() / a['valid_length'].sum()) < 1e-9
    rows = np.broadcast_to(np.arange(len(real))[:, None], real.shape)[real]
    positions = a['masked_positions'][real]
    assert (positions < a['valid_length'][rows]).all()
    originals, shown = a['masked_ids'][real], a['input_ids'][rows, positions]
    assert not np.isin(originals, specials).any()  # [CLS]/[SEP]/[PAD] never masked
    total = len(shown)
    as_mask = np.mean(shown == vocab['[MASK]'])
    kept = np.mean(shown == originals)
    randomised = shown[(shown != vocab['[MASK]']) & (shown != originals)]
    assert total > 40000
    assert abs(as_mask - 0.8) < 0.01
    assert abs(kept - 0.1) < 0.01 and abs(len(randomised) / total - 0.1) < 0.01
    assert not np.isin(randomised, specials).any()
    assert len(np.unique(randomised)) > 50  # drawn from the whole ordinary vocabulary
    for row in range(200):  # masked positions are increasing and unique
        pos = a['masked_positions'][row][a['masked_weights'][row] > 0]
        assert (np.diff(pos) > 0).all()


def test_nsp_balance(prepared):
    _, _, _, root, manifest = prepared
    _, a = load_all(root / 'out')
    assert abs(a['nsp_label'].mean() - 0.5) < 0.02
    assert manifest['not_next_fraction'] == pytest.approx(a['nsp_label'].mean())


def test_deterministic_for_a_seed(prepared, tmp_path):
    vocab, corpus, config, root, _ = prepared
    _, first = load_all(root / 'out')
    prepare_pretraining_data(corpus, vocab, str(tmp_path / 'same'), config, progress=False)
    _, same = load_all(tmp_path / 'same')
    for key in SHARD_KEYS:
        np.testing.assert_array_equal(first[key], same[key])
    other = PretrainingDataConfig(**{**config.__dict__, 'seed': 8, 'dupe_factor': 1})
    prepare_pretraining_data(corpus, vocab, str(tmp_path / 'other'), other, progress=False)
    _, diff = load_all(tmp_path / 'other')
    width = min(len(diff['input_ids']), 200)
    assert not np.array_equal(first['input_ids'][:width], diff['input_ids'][:width])


def test_whole_word_masking(vocab, tmp_path):
    words = ['jacksonville', 'hairy', 'dogs', 'the', 'red', 'playing', 'cats', 'played', 'mat']
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(30):
        for _ in range(8):
            lines.append(' '.join(rng.choice(words, size=6)))
        lines.append('')
    corpus = tmp_path / 'words.txt'
    corpus.write_text('\n'.join(lines), encoding='utf-8')
    config = PretrainingDataConfig(max_seq_length=48, max_predictions_per_seq=8,
                                   whole_word_mask=True, dupe_factor=4, seed=3)
    prepare_pretraining_data(str(corpus), vocab, str(tmp_path / 'out'), config, progress=False)
    _, a = load_all(tmp_path / 'out')
    restored = restore_unmasked(a['input_ids'], a['masked_positions'], a['masked_ids'],
                                a['masked_weights'])
    is_cont = np.array([t.startswith('##') for t in vocab.idx_to_token])
    special = {vocab[t] for t in ('[CLS]', '[SEP]', '[PAD]', '[MASK]')}
    partial_word_checked = 0
    for i in range(len(restored)):
        masked = set(a['masked_positions'][i][a['masked_weights'][i] > 0].tolist())
        assert len(masked) <= 8
        words, ids = [], restored[i][:a['valid_length'][i]]
        for pos, token in enumerate(ids.tolist()):
            if token in special:
                words.append(None)  # a boundary; never masked
            elif words and words[-1] is not None and is_cont[token]:
                words[-1].add(pos)
            else:
                words.append({pos})
        for word in filter(None, words):
            assert word <= masked or not word & masked, (i, word, masked)
            partial_word_checked += len(word) > 1 and word <= masked
    assert partial_word_checked > 50


def test_masker_unit(vocab):
    masker = Masker.from_vocab(vocab, masked_lm_prob=0.15, max_predictions_per_seq=5)
    ids = np.array([vocab['[CLS]']] + [vocab[f't{i}'] for i in range(30)] + [vocab['[SEP]']])
    out = masker.mask(ids, np.random.default_rng(0))
    assert len(out.positions) == 5 and (np.diff(out.positions) > 0).all()
    np.testing.assert_array_equal(out.originals, ids[out.positions])
    assert 0 not in out.positions and len(ids) - 1 not in out.positions
    untouched = np.setdiff1d(np.arange(len(ids)), out.positions)
    np.testing.assert_array_equal(out.input_ids[untouched], ids[untouched])
    assert masker.num_to_predict(3) == 1 and masker.num_to_predict(20) == 3
    with pytest.raises(ConfigError, match='is_continuation'):
        Masker(5, [3, 4], [10, 11], whole_word_mask=True)
    with pytest.raises(ConfigError, match='masked_lm_prob'):
        Masker(5, [3, 4], [10, 11], masked_lm_prob=1.5)


def test_config_validation():
    with pytest.raises(ConfigError, match='max_seq_length=2'):
        PretrainingDataConfig(max_seq_length=2)
    with pytest.raises(ConfigError, match='exceeds'):
        PretrainingDataConfig(max_seq_length=16, max_predictions_per_seq=20)
    with pytest.raises(ConfigError, match='input_format'):
        PretrainingDataConfig(input_format='html')


def test_two_workers_split_documents(vocab_txt, tmp_path):
    corpus = numbered_corpus(tmp_path / 'c.txt', num_docs=12, sentences=(5, 10))
    config = PretrainingDataConfig(max_seq_length=32, max_predictions_per_seq=5, seed=1)
    manifest = prepare_pretraining_data(corpus, vocab_txt, str(tmp_path / 'out'), config,
                                        num_workers=2, progress=False)
    assert [s['file'] for s in manifest['shards']] == ['part-000-00000.npz',
                                                       'part-001-00000.npz']
    assert manifest['num_documents'] == 12 and manifest['num_workers'] == 2
    for shard in manifest['shards']:
        assert load_shard(str(tmp_path / 'out' / shard['file']))['input_ids'].shape == \
            (shard['num_examples'], 32)
    log = (tmp_path / 'out' / 'prepare_pretraining.log').read_text()
    assert '[worker 1] wrote part-001-00000.npz' in log


def test_cli_prepare_pretraining(vocab_txt, tmp_path, capsys):
    corpus = numbered_corpus(tmp_path / 'c.txt', num_docs=6, sentences=(5, 10))
    out = str(tmp_path / 'out')
    argv = ['prepare-pretraining', '--input', f'{corpus},{corpus}', '--vocab', vocab_txt,
            '--output-dir', out, '--max-seq-length', '32', '--max-predictions-per-seq', '5',
            '--examples-per-shard', '10', '--seed', '3']
    assert main(argv) == 0
    assert 'examples from 12 documents' in capsys.readouterr().out
    manifest, arrays = load_all(out)
    assert manifest['config']['max_seq_length'] == 32 and arrays['input_ids'].shape[1] == 32
    assert len(manifest['shards']) == -(-manifest['num_examples'] // 10)
    assert main(argv) == 2  # refuses to mix with an earlier run
    assert 'already holds pretraining data' in capsys.readouterr().err
    assert main(argv + ['--overwrite']) == 0
    assert main(['prepare-pretraining', '--input', str(tmp_path / 'missing.txt'), '--vocab',
                 vocab_txt, '--output-dir', str(tmp_path / 'o2')]) == 2
    assert 'input file not found' in capsys.readouterr().err


def test_streams_with_bounded_buffers(vocab, tmp_path, monkeypatch):
    """Shards are written while the input is still being read: nothing holds the corpus."""
    import gluonbert.data.pretraining as pretraining
    import gluonbert.data.shards as shards
    corpus = numbered_corpus(tmp_path / 'c.txt', num_docs=80, sentences=(10, 20))
    read = {'docs': 0}
    written_after = []
    real_iter, real_write = pretraining.iter_documents, shards.write_shard

    def counting_iter(*args, **kwargs):
        for doc in real_iter(*args, **kwargs):
            read['docs'] += 1
            yield doc

    def recording_write(path, arrays):
        written_after.append(read['docs'])
        real_write(path, arrays)
    monkeypatch.setattr(pretraining, 'iter_documents', counting_iter)
    monkeypatch.setattr(shards, 'write_shard', recording_write)
    config = PretrainingDataConfig(max_seq_length=32, max_predictions_per_seq=5,
                                   examples_per_shard=20, nsp_pool_documents=3,
                                   shuffle_buffer=10)
    manifest = prepare_pretraining_data(corpus, vocab, str(tmp_path / 'out'), config,
                                        progress=False)
    assert manifest['num_documents'] == 80 and len(written_after) > 10
    assert written_after[0] < 15  # the first shard came long before the end of the input


def test_worker_data_error_reaches_the_caller(vocab_txt, tmp_path):
    from gluonbert.errors import DataFormatError
    bad = tmp_path / 'bad.txt'
    bad.write_bytes(b't1 t2 t3\n\nt4 t5\n\nt6 \xff t7\n')
    with pytest.raises(DataFormatError, match='invalid UTF-8') as err:
        prepare_pretraining_data(str(bad), vocab_txt, str(tmp_path / 'out'),
                                 PretrainingDataConfig(max_seq_length=16,
                                                       max_predictions_per_seq=2),
                                 num_workers=2, progress=False)
    assert err.value.path == str(bad) and err.value.line == 5


def test_workers_leave_stopping_to_the_parent(vocab_txt, tmp_path):
    """A worker of a parallel preparation ignores SIGINT and dies on SIGTERM even when the
    parent installed the CLI's handlers (``raise_on_signals``). Inheriting them, a terminated
    worker reported an error instead and then waited at its exit for a queue the parent no
    longer read: ``prepare_pretraining_data`` hung in its final ``join``."""
    import multiprocessing
    import signal
    import time

    from gluonbert.data.pretraining import _worker_main
    from gluonbert.platform import raise_on_signals
    corpus = numbered_corpus(tmp_path / 'corpus.txt', num_docs=4000, sentences=(20, 40))
    out = tmp_path / 'out'
    out.mkdir()
    config = PretrainingDataConfig(max_seq_length=16, max_predictions_per_seq=2)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    raise_on_signals()
    try:
        ctx = multiprocessing.get_context('fork')
        queue = ctx.Queue()
        proc = ctx.Process(target=_worker_main,
                           args=(queue, [str(corpus)], vocab_txt, True, str(out), config, 0, 1))
        proc.start()
        assert queue.get(timeout=60)[0] == 'progress'         # working
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        assert proc.is_alive(), 'SIGINT stopped the worker'
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(timeout=10)
        assert proc.exitcode == -signal.SIGTERM
        queue.cancel_join_thread()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.is_alive():
            proc.kill()
