"""Vocabulary loading (HuggingFace vocab.txt and GluonNLP JSON) and WordPiece tokenization."""
import json

import pytest

from gluonbert.data.tokenizer import (get_tokenizer, infer_lower_case, load_tokenizer,
                                      load_vocab, vocab_from_hf_vocab_txt, write_hf_vocab_txt)
from gluonbert.errors import DataFormatError, InputError, WeightsNotFoundError

MRPC_LIKE = [
    ('Amrozi accused his brother, whom he called "the witness", of deliberately distorting '
     'his evidence.'),
    "Yucaipa owned Dominick's before selling the chain to Safeway in 1998 for $2.5 billion.",
    'The DVD-CCA then appealed to the state Supreme Court ; shares of GOOG rose 3.4% to $103.',
    'Tab-separated? No: naïve café owners in Zürich said “hello” — 100 km/h!',
]


def test_hf_vocab_ids_are_line_numbers_and_specials_mapped(vocab_txt):
    lines = open(vocab_txt, encoding='utf-8').read().splitlines()
    vocab = vocab_from_hf_vocab_txt(vocab_txt)
    assert len(vocab) == len(lines)
    assert list(vocab.idx_to_token) == lines
    for index, token in enumerate(lines):
        assert vocab[token] == index
    assert (vocab.padding_token, vocab.unknown_token, vocab.cls_token, vocab.sep_token,
            vocab.mask_token) == ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')
    assert vocab['[PAD]'] == 0 and vocab['[UNK]'] == 2 and vocab['[CLS]'] == 3
    assert vocab['never-seen-token'] == vocab['[UNK]']


def test_load_vocab_detects_json_and_directory(vocab, vocab_txt, tmp_path):
    path = tmp_path / 'book_corpus_wiki_en_uncased-0123abcd.vocab'
    path.write_text(vocab.to_json(), encoding='utf-8')
    loaded = load_vocab(str(path))
    assert list(loaded.idx_to_token) == list(vocab.idx_to_token)
    assert loaded.cls_token == '[CLS]' and loaded['[MASK]'] == vocab['[MASK]']
    assert list(load_vocab(str(tmp_path)).idx_to_token) == list(vocab.idx_to_token)


def test_write_hf_vocab_txt_round_trip(vocab, tmp_path):
    out = tmp_path / 'sub'
    out.mkdir()
    write_hf_vocab_txt(vocab, str(out / 'vocab.txt'))
    assert (out / 'vocab.txt').read_text(encoding='utf-8').splitlines() == \
        list(vocab.idx_to_token)
    assert sorted(p.name for p in out.iterdir()) == ['vocab.txt']  # no temporary file left


def test_write_hf_vocab_txt_rejects_non_hf_special_names(tmp_path):
    import gluonnlp
    vocab = gluonnlp.vocab.BERTVocab(gluonnlp.data.count_tokens(['a', 'b']), padding_token='<p>')
    with pytest.raises(InputError, match="padding_token is '<p>'"):
        write_hf_vocab_txt(vocab, str(tmp_path / 'vocab.txt'))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('content, line, message', [
    ('[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncat\ncat\n', 7, 'repeats line 6'),
    ('[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n', 3, 'empty token'),
    ('[PAD]\n[UNK]\n[CLS]\n[SEP]\ncat\n', None, "missing"),
])
def test_bad_vocab_txt(tmp_path, content, line, message):
    path = tmp_path / 'vocab.txt'
    path.write_text(content, encoding='utf-8')
    with pytest.raises(DataFormatError, match=message) as err:
        load_vocab(str(path))
    assert err.value.line == line and err.value.path == str(path)


def test_bad_utf8_and_missing_files(tmp_path):
    path = tmp_path / 'vocab.txt'
    path.write_bytes(b'[PAD]\n[UNK]\nca\xfft\n')
    with pytest.raises(DataFormatError, match='invalid UTF-8') as err:
        load_vocab(str(path))
    assert err.value.line == 3
    with pytest.raises(WeightsNotFoundError, match='not found'):
        load_vocab(str(tmp_path / 'nope.txt'))
    bad_json = tmp_path / 'x.vocab'
    bad_json.write_text('{"token_to_idx": ', encoding='utf-8')
    with pytest.raises(DataFormatError, match='invalid JSON'):
        load_vocab(str(bad_json))


def test_tokenizer_wordpiece_and_case(vocab):
    assert get_tokenizer(vocab, lower=True)('The Dog is Jacksonville, hairy!') == \
        ['the', 'dog', 'is', 'jack', '##son', '##ville', ',', 'hair', '##y', '!']
    cased = get_tokenizer(vocab, lower=False)('The dog')
    assert cased == ['[UNK]', 'dog']


def test_infer_lower_case(tmp_path, vocab_txt):
    assert infer_lower_case(str(tmp_path / 'book_corpus_wiki_en_uncased-a6607397.vocab'))
    assert infer_lower_case(str(tmp_path / 'book_corpus_wiki_en_cased-2c8b2f3e.vocab')) is False
    assert infer_lower_case(vocab_txt) is None
    (tmp_path / 'tokenizer_config.json').write_text(json.dumps({'do_lower_case': False}))
    assert infer_lower_case(vocab_txt) is False
    _, tok = load_tokenizer(vocab_txt)
    assert tok('Dog') == ['[UNK]']


def test_matches_huggingface_tokenizer(minilm_dir):
    transformers = pytest.importorskip('transformers')
    hf = transformers.BertTokenizer.from_pretrained(minilm_dir)
    vocab, tokenizer = load_tokenizer(minilm_dir)
    assert len(vocab) == hf.vocab_size == 30522
    for text in MRPC_LIKE:
        tokens = tokenizer(text)
        assert tokens == hf.tokenize(text)
        assert vocab.to_indices(tokens) == hf.convert_tokens_to_ids(tokens)
    pair = hf(MRPC_LIKE[0], MRPC_LIKE[1])['input_ids']
    ours = ([vocab['[CLS]']] + vocab.to_indices(tokenizer(MRPC_LIKE[0])) + [vocab['[SEP]']] +
            vocab.to_indices(tokenizer(MRPC_LIKE[1])) + [vocab['[SEP]']])
    assert ours == pair


def test_matches_huggingface_on_real_mrpc(minilm_dir, mrpc_train):
    transformers = pytest.importorskip('transformers')
    from gluonbert.data.glue import read_msr_paraphrase
    hf = transformers.BertTokenizer.from_pretrained(minilm_dir)
    vocab, tokenizer = load_tokenizer(minilm_dir)
    records = read_msr_paraphrase(mrpc_train)[:300]
    for rec in records:
        for text in (rec.text_a, rec.text_b):
            tokens = tokenizer(text)
            assert tokens == hf.tokenize(text), text
            assert vocab.to_indices(tokens) == hf.convert_tokens_to_ids(tokens)
