"""Fixtures of the training tests: synthetic vocabulary, corpus, shards, paraphrase TSVs and a
tiny "converted" BERT directory to fine-tune from."""
import os

import pytest

from .synthetic import (write_converted, write_corpus, write_paraphrase_tsv, write_random_shards,
                        write_vocab)

SHARED_DATA = os.environ.get('GLUONBERT_SHARED_DATA',
                             os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                                          'data'))


@pytest.fixture
def vocab_txt(tmp_path):
    return write_vocab(tmp_path / 'vocab.txt')


@pytest.fixture
def corpus_txt(tmp_path):
    return write_corpus(tmp_path / 'corpus.txt')


@pytest.fixture
def shards_dir(tmp_path):
    return write_random_shards(tmp_path / 'shards')


@pytest.fixture
def paraphrase_dir(tmp_path):
    directory = tmp_path / 'paraphrase'
    directory.mkdir()
    write_paraphrase_tsv(directory / 'train.tsv', 160, seed=1)
    write_paraphrase_tsv(directory / 'dev.tsv', 48, seed=2)
    return str(directory)


@pytest.fixture(scope='session')
def pretrained_run(tmp_path_factory):
    """A tiny BERT pretrained for 300 steps on the synthetic corpus (about 15 s on 2 cores),
    shared by the test that checks it learned and by fine-tuning tests that start from it.

    Outputs
    -------
    dict
        :func:`gluonbert.train.pretrain.pretrain`'s summary (``out_dir``, ``history``...).
    """
    from gluonbert.train.config import DeviceConfig, OptimizerConfig, PretrainConfig
    from gluonbert.train.pretrain import pretrain
    tmp = tmp_path_factory.mktemp('pretrained')
    config = PretrainConfig(
        data=write_corpus(tmp / 'corpus.txt'), vocab=write_vocab(tmp / 'vocab.txt'),
        out_dir=str(tmp / 'run'), model='bert_tiny_test', max_seq_length=32,
        max_predictions_per_seq=5, batch_size=32, num_steps=300, log_interval=25,
        checkpoint_interval=150, dropout=0.0, progress=False,
        optimizer=OptimizerConfig(lr=2e-3, warmup_ratio=0.05), devices=DeviceConfig(cpus=2))
    return pretrain(config)


@pytest.fixture
def converted_dir(tmp_path):
    """A randomly initialised tiny BERT saved like ``gluonbert convert`` output, without a
    pooler (as a sentence-embedding checkpoint): fine-tuning must add a fresh one."""
    return write_converted(tmp_path / 'converted')
