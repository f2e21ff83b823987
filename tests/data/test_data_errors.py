"""Bad pretraining inputs give named errors, not tracebacks or misleading messages (issue 12)."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from gluonbert.data.pretraining import PretrainingDataConfig, prepare_pretraining_data
from gluonbert.errors import DataFormatError

CONFIG = PretrainingDataConfig(max_seq_length=16, max_predictions_per_seq=3,
                               examples_per_shard=50, shuffle_buffer=1)


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'gluonbert.cli', *args], capture_output=True,
                          text=True, timeout=300)


def test_text_file_named_npz_in_a_shard_directory(tmp_path):
    from gluonbert.data import PretrainingBatches
    shards = tmp_path / 'shards'
    shards.mkdir()
    (shards / 'part-000-00000.npz').write_text('this is not a shard\n')
    with pytest.raises(DataFormatError, match=r'part-000-00000.npz: is not an .npz \(zip\) '
                                              r"archive: it starts with b'this is not.*\(text\)"):
        PretrainingBatches(str(shards), 2)


def test_text_file_named_npz_through_the_cli(tmp_path):
    shards = tmp_path / 'shards'
    shards.mkdir()
    (shards / 'notes.npz').write_text('hello\n')
    proc = _cli('pretrain', '--data', str(shards), '--out-dir', str(tmp_path / 'run'),
                '--model', 'bert_tiny_test', '--num-steps', '1', '--no-progress')
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'notes.npz: is not an .npz (zip) archive' in proc.stderr
    assert 'Traceback' not in proc.stderr and 'pickle' not in proc.stderr


def test_damaged_zip_named_npz(tmp_path):
    from gluonbert.data.shards import load_shard
    path = tmp_path / 'part-000-00000.npz'
    np.savez(str(path), input_ids=np.zeros((2, 3), dtype=np.int32))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataFormatError, match=r'part-000-00000.npz: damaged .npz archive'):
        load_shard(str(path))


def test_empty_raw_text_names_the_input(tmp_path, vocab_txt):
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n\n   \n')
    with pytest.raises(DataFormatError, match=r'empty.txt: holds no sentences'):
        prepare_pretraining_data(str(empty), vocab_txt, str(tmp_path / 'out'), CONFIG,
                                 progress=False)


def test_empty_raw_text_through_pretrain_cli(tmp_path, vocab_txt):
    """It used to say "no .npz shards found" about a directory inside --out-dir."""
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n')
    proc = _cli('pretrain', '--data', str(empty), '--vocab', vocab_txt, '--out-dir',
                str(tmp_path / 'run'), '--model', 'bert_tiny_test', '--num-steps', '1',
                '--max-seq-length', '16', '--max-predictions-per-seq', '3', '--no-progress')
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f'{empty}: holds no sentences' in proc.stderr
    assert 'no .npz shards' not in proc.stderr and 'Traceback' not in proc.stderr


def _pairs(directory):
    from gluonbert.data.shards import load_shard
    manifest = json.loads((directory / 'pretraining_data.json').read_text())
    return manifest, [load_shard(str(directory / s['file'])) for s in manifest['shards']]


def test_one_sentence_corpus_never_pairs_a_sentence_with_itself(tmp_path, vocab_txt):
    one = tmp_path / 'one.txt'
    one.write_text('the cat sat on the mat .\n')
    with pytest.warns(UserWarning, match='no other document'):
        with pytest.raises(DataFormatError, match=r'one.txt: gave no examples: a single '
                                                  r'sentence has no next sentence'):
            prepare_pretraining_data(str(one), vocab_txt, str(tmp_path / 'out'), CONFIG,
                                     progress=False)


def test_one_document_corpus_makes_no_notnext_from_its_own_text(tmp_path, vocab_txt):
    """Several sentences but no other document: IsNext pairs only, single sentences skipped,
    with a warning and a count in the manifest."""
    doc = tmp_path / 'doc.txt'
    doc.write_text('\n'.join(['the cat sat on the mat .', 'the dog was red .',
                              'jack said no .', 'she played in the day .'] * 3) + '\n')
    config = PretrainingDataConfig(max_seq_length=12, max_predictions_per_seq=2,
                                   dupe_factor=5, shuffle_buffer=1, short_seq_prob=0.5)
    with pytest.warns(UserWarning, match=r'chunks had no other document'):
        manifest = prepare_pretraining_data(str(doc), vocab_txt, str(tmp_path / 'out'), config,
                                            progress=False)
    _, shards = _pairs(tmp_path / 'out')
    labels = np.concatenate([s['nsp_label'] for s in shards])
    assert len(labels) > 0 and not labels.any()            # no NotNext example at all
    assert manifest['not_next_fraction'] == 0.0
    assert 'skipped_no_other_document' in manifest


def test_two_documents_still_make_notnext_examples(tmp_path, vocab_txt):
    """The fallback only applies without another document: the usual mix otherwise."""
    docs = tmp_path / 'docs.txt'
    docs.write_text('the cat sat .\nthe dog ran .\n\njack said no .\nshe was red .\n')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        manifest = prepare_pretraining_data(str(docs), vocab_txt, str(tmp_path / 'out'),
                                            PretrainingDataConfig(max_seq_length=16,
                                                                  max_predictions_per_seq=2,
                                                                  dupe_factor=10,
                                                                  shuffle_buffer=1),
                                            progress=False)
    assert 0 < manifest['not_next_fraction'] < 1
    assert manifest['skipped_no_other_document'] == 0
    assert os.path.isfile(tmp_path / 'out' / 'pretraining_data.json')
