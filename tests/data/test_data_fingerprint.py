"""Prepared pretraining data records what it was made from and is rebuilt when that changes
(ensure_prepared; issue 12)."""
import json
import logging
import os

import pytest

from gluonbert.data.pretraining import (PretrainingDataConfig, data_fingerprint, ensure_prepared,
                                        fingerprint_changes)

CONFIG = PretrainingDataConfig(max_seq_length=16, max_predictions_per_seq=3, shuffle_buffer=1)
TEXT = ('the cat sat on the mat .\nthe dog was red .\n\njack said no .\nshe played in the day '
        '.\nit was night .\n')


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / 'corpus.txt'
    path.write_text(TEXT)
    return str(path)


def _manifest(directory):
    return json.loads((directory / 'pretraining_data.json').read_text())


def _shard_times(directory):
    return {n: os.stat(directory / n).st_mtime_ns for n in os.listdir(directory)
            if n.endswith('.npz')}


def test_manifest_records_the_fingerprint(tmp_path, corpus, vocab_txt):
    result = ensure_prepared(corpus, vocab_txt, str(tmp_path / 'data'), CONFIG, lower=True,
                             progress=False)
    assert result['action'] == 'prepared' and result['reasons'] == []
    recorded = _manifest(tmp_path / 'data')['fingerprint']
    assert recorded == data_fingerprint([corpus], vocab_txt, CONFIG, True)
    (entry,) = recorded['inputs']
    assert entry['path'] == os.path.abspath(corpus) and entry['bytes'] == len(TEXT)
    assert len(entry['sha1']) == 40 and entry['mtime_ns'] == os.stat(corpus).st_mtime_ns
    assert recorded['vocab']['path'] == os.path.abspath(vocab_txt)
    assert recorded['config']['max_seq_length'] == 16 and recorded['lower'] is True


def test_same_inputs_are_reused(tmp_path, corpus, vocab_txt, caplog):
    out = tmp_path / 'data'
    ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    before = _shard_times(out)
    os.utime(corpus)            # touched, same text: not a change
    with caplog.at_level(logging.INFO, logger='gluonbert.data.pretraining'):
        result = ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True,
                                 progress=False)
    assert result['action'] == 'reused'
    assert _shard_times(out) == before
    assert 'reusing the pretraining data' in caplog.text


def test_edited_text_is_rebuilt_with_a_message(tmp_path, corpus, vocab_txt, caplog):
    out = tmp_path / 'data'
    first = ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    with open(corpus, 'a', encoding='utf-8') as f:
        f.write('\nthat dog is fast .\nthe cat is slow .\n')
    with caplog.at_level(logging.WARNING, logger='gluonbert.data.pretraining'):
        result = ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True,
                                 progress=False)
    assert result['action'] == 'rebuilt'
    assert f'rebuilding the pretraining data in {out}' in caplog.text
    assert f'input {corpus} changed ({len(TEXT)} -> ' in caplog.text
    assert result['num_documents'] == first['num_documents'] + 1
    assert _manifest(out)['fingerprint']['inputs'][0]['bytes'] == os.path.getsize(corpus)


def test_same_size_new_content_is_rebuilt(tmp_path, corpus, vocab_txt):
    out = tmp_path / 'data'
    ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    stat = os.stat(corpus)
    with open(corpus, 'w', encoding='utf-8') as f:
        f.write(TEXT.replace('cat', 'dog'))
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    result = ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    assert result['action'] == 'rebuilt'
    assert 'same size, new content' in result['reasons'][0]


def test_vocabulary_options_and_input_list_changes(tmp_path, corpus, vocab_txt):
    out = tmp_path / 'data'
    ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    recorded = _manifest(out)['fingerprint']
    assert fingerprint_changes(recorded, [corpus], vocab_txt, CONFIG, True) == []
    other = CONFIG.__class__(**dict(CONFIG.__dict__, max_seq_length=20))
    assert fingerprint_changes(recorded, [corpus], vocab_txt, other, True) == [
        'options changed: max_seq_length 16 -> 20']
    assert 'lower=False' in fingerprint_changes(recorded, [corpus], vocab_txt, CONFIG, False)[0]
    second = tmp_path / 'more.txt'
    second.write_text(TEXT)
    assert 'the inputs are' in fingerprint_changes(recorded, [corpus, str(second)], vocab_txt,
                                                   CONFIG, True)[0]
    with open(vocab_txt, 'a', encoding='utf-8') as f:
        f.write('extra\n')
    result = ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    assert result['action'] == 'rebuilt'
    assert result['reasons'][0].startswith(f'vocabulary {vocab_txt} changed')


def test_data_without_fingerprint_or_manifest_is_rebuilt(tmp_path, corpus, vocab_txt):
    out = tmp_path / 'data'
    ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    manifest = _manifest(out)
    del manifest['fingerprint']                 # written by an older gluonbert
    (out / 'pretraining_data.json').write_text(json.dumps(manifest))
    result = ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    assert result['action'] == 'rebuilt' and 'has no fingerprint' in result['reasons'][0]
    (out / 'pretraining_data.json').unlink()    # an interrupted preparation
    result = ensure_prepared(corpus, vocab_txt, str(out), CONFIG, lower=True, progress=False)
    assert result['action'] == 'rebuilt' and 'an interrupted preparation' in result['reasons'][0]
