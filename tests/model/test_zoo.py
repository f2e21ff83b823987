"""gluonbert.get_model: GluonNLP model-zoo file names, sha1 checks, download and offline errors.

A fake zoo is built in tmp_path: a tiny model's .params and .vocab files named
``<model>_<dataset>-<sha1[:8]>.params`` / ``<dataset>-<sha1[:8]>.vocab`` after their real sha1,
registered in GluonNLP's own sha1 tables (monkeypatched entries), then loaded by name. The
download path runs GluonNLP's real downloader against a local HTTP server.
"""
import functools
import hashlib
import http.server
import os
import threading
import zipfile

import gluonnlp
import mxnet as mx
import numpy as np
import pytest
from gluonnlp.data import count_tokens
from gluonnlp.data import utils as gluonnlp_data_utils
from gluonnlp.vocab import BERTVocab
from mxnet.gluon.model_zoo import model_store

import gluonbert
from gluonbert.errors import ChecksumError, ConfigError, WeightsNotFoundError
from gluonbert.model import BERTModel, get_config
from gluonbert.model import zoo

DATASET = 'fake_corpus_uncased'
MODEL = 'bert_tiny_test'
WORDS = 'a tiny corpus of words for a tiny test of the model zoo loader'.split()


def sha1(path):
    return hashlib.sha1(open(path, 'rb').read()).hexdigest()


def offline(url, member, path):
    raise OSError('Network is unreachable')


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    """Writes a tiny pretrained model into a zoo root; returns (root, model, vocab, files)."""
    vocab = BERTVocab(count_tokens(WORDS))
    mx.random.seed(0)
    model = BERTModel(get_config(MODEL, vocab_size=len(vocab)))
    model.initialize()
    staging = tmp_path / 'staging'
    staging.mkdir()
    model.save_parameters(str(staging / 'p'))
    (staging / 'v').write_text(vocab.to_json())
    params_sha1, vocab_sha1 = sha1(staging / 'p'), sha1(staging / 'v')
    monkeypatch.setitem(model_store._model_sha1, f'{MODEL}_{DATASET}', params_sha1)
    monkeypatch.setitem(gluonnlp_data_utils._vocab_sha1, DATASET, [vocab_sha1, '.vocab', {}])
    root = tmp_path / 'models'
    root.mkdir()
    files = {'params': f'{MODEL}_{DATASET}-{params_sha1[:8]}.params',
             'vocab': f'{DATASET}-{vocab_sha1[:8]}.vocab'}
    os.replace(staging / 'p', root / files['params'])
    os.replace(staging / 'v', root / files['vocab'])
    return root, model, vocab, files


def run(model, vocab_size):
    rng = np.random.RandomState(0)
    ids = mx.nd.array(rng.randint(0, vocab_size, (2, 7)))
    types, valid = mx.nd.zeros((2, 7)), mx.nd.array([7, 4])
    return [o.asnumpy() for o in model(ids, types, valid, mx.nd.array([[1, 2], [0, 3]]))]


def test_file_names_and_urls_come_from_gluonnlp_tables():
    params = zoo.params_file('bert_12_768_12', 'book_corpus_wiki_en_uncased')
    assert params.file_name == 'bert_12_768_12_book_corpus_wiki_en_uncased-75cc780f.params'
    assert params.sha1 == '75cc780f085e8007b3bf6769c6348bb1ff9a3074'
    assert params.url.endswith('gluon/models/bert_12_768_12_book_corpus_wiki_en_uncased-'
                               '75cc780f.zip')
    vocab = zoo.vocab_file('book_corpus_wiki_en_uncased')
    assert vocab.file_name == 'book_corpus_wiki_en_uncased-a6607397.vocab'
    assert vocab.url.endswith('gluon/dataset/vocab/book_corpus_wiki_en_uncased-a6607397.zip')
    with pytest.raises(ConfigError, match='book_corpus_wiki_en_cased'):
        zoo.params_file('bert_24_1024_16', 'no_such_corpus')
    with pytest.raises(ConfigError, match='SentencePiece'):
        zoo.vocab_file('kobert_news_wiki_ko_cased')


def test_default_root_is_gluonnlp_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    assert zoo.default_root() == os.path.join(gluonnlp.base.get_home_dir(), 'models')
    assert zoo.default_root() == os.path.join(str(tmp_path), 'models')


def test_registered_tiny_model_loads_by_name(fake_zoo):
    root, source, vocab, _ = fake_zoo
    model, loaded_vocab = gluonbert.get_model(MODEL, dataset_name=DATASET, root=str(root),
                                              downloader=offline)
    assert list(loaded_vocab.idx_to_token) == list(vocab.idx_to_token)
    assert model.config.vocab_size == len(vocab)
    for a, b in zip(run(model, len(vocab)), run(source, len(vocab))):
        np.testing.assert_array_equal(a, b)
    # Heads switched off: the extra parameters of the file are ignored, as in GluonNLP.
    encoder_only, _ = gluonbert.get_model(MODEL, dataset_name=DATASET, root=str(root),
                                          use_decoder=False, use_classifier=False,
                                          downloader=offline)
    np.testing.assert_array_equal(encoder_only.encoder.word_embed[0].weight.data().asnumpy(),
                                  source.encoder.word_embed[0].weight.data().asnumpy())


def test_wrong_sha1_is_refused(fake_zoo):
    root, _, _, files = fake_zoo
    path = root / files['params']
    expected = sha1(path)
    with open(path, 'ab') as f:
        f.write(b'\0')
    with pytest.raises(ChecksumError) as err:
        gluonbert.get_model(MODEL, dataset_name=DATASET, root=str(root), downloader=offline)
    message = str(err.value)
    assert str(path) in message and expected in message and sha1(path) in message


def test_absent_file_offline_names_file_dir_and_url(fake_zoo):
    root, _, _, files = fake_zoo
    os.remove(root / files['params'])
    with pytest.raises(WeightsNotFoundError) as err:
        gluonbert.get_model(MODEL, dataset_name=DATASET, root=str(root), downloader=offline)
    message = str(err.value)
    assert files['params'] in message and str(root) in message
    assert f'gluon/models/{files["params"][:-len(".params")]}.zip' in message
    assert not [f for f in os.listdir(root) if f.startswith('.')]    # no partial file left


def test_absent_file_with_real_downloader_and_no_server(fake_zoo, monkeypatch):
    root, _, _, files = fake_zoo
    os.remove(root / files['vocab'])
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')   # connection refused
    with pytest.raises(WeightsNotFoundError, match=files['vocab'].replace('.', r'\.')):
        gluonbert.get_model(MODEL, dataset_name=DATASET, root=str(root))


@pytest.fixture
def zoo_server(tmp_path, monkeypatch):
    """A local HTTP server playing the Apache MXNet repository; returns its directory."""
    served = tmp_path / 'repo'
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv('MXNET_GLUON_REPO', f'http://127.0.0.1:{server.server_address[1]}/')
    yield served
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _publish(served, subdir, file_path):
    name = os.path.basename(file_path)
    target = served / subdir
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target / (os.path.splitext(name)[0] + '.zip'), 'w') as zf:
        zf.write(file_path, name)


def test_absent_files_are_downloaded_with_gluonnlp_downloader(fake_zoo, zoo_server, tmp_path):
    root, source, vocab, files = fake_zoo
    _publish(zoo_server, 'gluon/models', root / files['params'])
    _publish(zoo_server, 'gluon/dataset/vocab', root / files['vocab'])
    empty_root = tmp_path / 'fresh'
    model, _ = gluonbert.get_model(MODEL, dataset_name=DATASET, root=str(empty_root))
    assert sorted(os.listdir(empty_root)) == sorted(files.values())
    for a, b in zip(run(model, len(vocab)), run(source, len(vocab))):
        np.testing.assert_array_equal(a, b)


def test_downloaded_file_with_wrong_sha1_is_refused_and_removed(fake_zoo, zoo_server, tmp_path):
    root, _, _, files = fake_zoo
    bad = tmp_path / files['vocab']
    bad.write_text('{"tampered": true}')
    _publish(zoo_server, 'gluon/dataset/vocab', bad)
    fresh = tmp_path / 'fresh'
    with pytest.raises(ChecksumError, match='downloaded'):
        gluonbert.get_model(MODEL, dataset_name=DATASET, root=str(fresh))
    assert os.listdir(fresh) == []


def test_untrained_model_from_vocab(tmp_path):
    vocab = BERTVocab(count_tokens(WORDS))
    vocab_path = tmp_path / 'v.vocab'
    vocab_path.write_text(vocab.to_json())
    model, loaded = gluonbert.get_model(MODEL, vocab=str(vocab_path), pretrained=False,
                                        dropout=0.0, use_decoder=False)
    assert model.config.vocab_size == len(vocab) == len(loaded)
    assert model.config.dropout == 0.0 and not model._use_decoder
    assert model.encoder.word_embed[0].weight._data is None        # uninitialised, as GluonNLP
    with pytest.raises(ConfigError, match='dataset_name'):
        gluonbert.get_model(MODEL, pretrained=False)
    with pytest.raises(ConfigError, match='pretrained=True needs dataset_name'):
        gluonbert.get_model(MODEL, vocab=vocab)
    with pytest.raises(ConfigError, match='vocab_size=7'):
        gluonbert.get_model(MODEL, vocab=vocab, pretrained=False, vocab_size=7)
    with pytest.raises(ConfigError, match=r"unknown arguments \['num_layerz'\]"):
        gluonbert.get_model(MODEL, vocab=vocab, pretrained=False, num_layerz=3)
