"""Named errors instead of tracebacks or misleading messages in the model package (issue 12)."""
import json
import os
import struct

import mxnet as mx
import pytest

import gluonbert
from gluonbert.errors import CheckpointError, ConfigError, WeightsNotFoundError
from gluonbert.model import BERTModel, get_config, list_configs
from gluonbert.model.checkpoint import read_params, strip_prefix


def offline(url, member, path):
    raise OSError('Network is unreachable')


def test_safetensors_header_claiming_a_petabyte(tmp_path):
    """Used to raise MemoryError (the reader allocated the claimed size)."""
    from gluonbert.model.convert_hf import read_hf_weights
    path = tmp_path / 'model.safetensors'
    path.write_bytes(struct.pack('<Q', 10 ** 15) + b'{"a": 1}')
    with pytest.raises(CheckpointError, match=r'model.safetensors: not a safetensors file '
                                              r'\(truncated or damaged\): its header claims '
                                              r'1000000000000000 bytes but the whole file holds 16'):
        read_hf_weights(str(path))


def test_safetensors_offsets_past_the_end(tmp_path):
    from gluonbert.model.convert_hf import read_hf_weights
    header = json.dumps({'w': {'dtype': 'F32', 'shape': [4], 'data_offsets': [0, 16]}}).encode()
    path = tmp_path / 'model.safetensors'
    path.write_bytes(struct.pack('<Q', len(header)) + header + b'\0' * 8)   # 8 of 16 bytes
    with pytest.raises(CheckpointError, match=r'tensor w has data_offsets \[0, 16\]; expected '
                                              r'0 <= begin <= end <= 8'):
        read_hf_weights(str(path))


def test_unknown_model_name_is_named_with_the_known_ones():
    with pytest.raises(ConfigError) as err:
        gluonbert.get_model('nonexistent')
    message = str(err.value)
    assert "unknown model 'nonexistent'" in message
    assert all(name in message for name in list_configs())
    with pytest.raises(ConfigError, match="unknown model 'nonexistent'"):
        gluonbert.get_model('nonexistent', dataset_name='book_corpus_wiki_en_uncased',
                            root='/nonexistent', downloader=offline)


def test_pretrained_without_zoo_files_names_vocabulary_and_weights(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        gluonbert.get_model('bert_12_768_12', dataset_name='book_corpus_wiki_en_uncased',
                            root=str(tmp_path), downloader=offline)
    message = str(err.value)
    assert 'book_corpus_wiki_en_uncased-a6607397.vocab' in message
    assert 'bert_12_768_12_book_corpus_wiki_en_uncased-75cc780f.params' in message
    assert 'gluon/models/bert_12_768_12_book_corpus_wiki_en_uncased-75cc780f.zip' in message
    with pytest.raises(WeightsNotFoundError) as err:      # pretrained=False: the vocabulary only
        gluonbert.get_model('bert_12_768_12', dataset_name='book_corpus_wiki_en_uncased',
                            pretrained=False, root=str(tmp_path), downloader=offline)
    assert '.params' not in str(err.value)


def _truncated_params(tmp_path):
    mx.random.seed(0)
    net = BERTModel(get_config('bert_tiny_test'), use_decoder=False, use_classifier=False)
    net.initialize()
    path = tmp_path / 'model.params'
    net.save_parameters(str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])
    return path


def test_truncated_params_named(tmp_path):
    path = _truncated_params(tmp_path)
    with pytest.raises(CheckpointError, match=rf'{path}: not a readable MXNet .params file '
                                              r'\(truncated or another format'):
        read_params(str(path))
    net = BERTModel(get_config('bert_tiny_test'), use_decoder=False, use_classifier=False)
    with pytest.raises(CheckpointError, match=rf'{path}: not a readable'):
        net.load_parameters(str(path))


def test_truncated_params_through_pretrained_build(tmp_path):
    """--from-converted, --pretrained-checkpoint and the pipelines read through
    pretrained.locate/build: a truncated model.params is named."""
    from gluonbert.model.pretrained import build, locate
    path = str(_truncated_params(tmp_path))
    assert os.path.basename(path) == 'model.params'
    directory = os.path.dirname(path)
    with open(os.path.join(directory, 'vocab.txt'), 'w') as f:
        f.write('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
                          + [f'w{i}' for i in range(95)]) + '\n')
    with open(os.path.join(directory, 'gluonbert_config.json'), 'w') as f:
        json.dump(get_config('bert_tiny_test').to_dict(), f)
    with pytest.raises(CheckpointError, match=rf'{path}: not a readable MXNet .params file'):
        build(locate(directory), use_pooler=True, use_decoder=False, use_classifier=False,
              dropout=0.0, fresh_pooler=True)


def test_export_prefixes_stripped_by_one_function(tmp_path):
    assert strip_prefix('arg:encoder.x') == 'encoder.x'
    assert strip_prefix('aux:y') == 'y' and strip_prefix('bert.arg:z') == 'bert.arg:z'
    mx.nd.save(str(tmp_path / 'p.params'), {'arg:a': mx.nd.ones(2), 'aux:b': mx.nd.zeros(1),
                                            'c': mx.nd.ones(1)})
    assert sorted(read_params(str(tmp_path / 'p.params'))) == ['a', 'b', 'c']


def test_one_vocabulary_resolver(tmp_path):
    from gluonbert.data.tokenizer import as_vocab
    from gluonbert.model import convert, zoo
    assert not hasattr(zoo, '_resolve_vocab') and not hasattr(convert, '_load_vocab')
    (tmp_path / 'vocab.txt').write_text('[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n')
    vocab = as_vocab(str(tmp_path))
    assert as_vocab(vocab) is vocab and vocab['hello'] == 5
    with pytest.raises(ConfigError, match='vocab is a list'):
        as_vocab(['hello'])


def test_removed_arguments_are_gone():
    """num_outputs, dtype_source and deduplicate were accepted and ignored."""
    import inspect
    net = BERTModel(get_config('bert_tiny_test'))
    assert not hasattr(net, 'num_outputs')
    assert 'dtype_source' not in inspect.signature(net.load_parameters).parameters
    assert 'deduplicate' not in inspect.signature(net.save_parameters).parameters
