"""One place finds and loads pretrained weights (gluonbert.model.pretrained): HuggingFace
directories (read in memory), ``gluonbert convert`` outputs, pretraining runs (finished or
stopped, or one checkpoint) and fine-tuning runs, with the heads each has."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from gluonbert.errors import CheckpointError, WeightsNotFoundError
from gluonbert.model import BERTClassifier, BERTModel, get_config
from gluonbert.model.pretrained import build, load_pretrained, locate

SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
WORDS = 'a crane is flying over the lake driver came to work bird fish'.split()
VOCAB = SPECIALS + WORDS + [f'w{i}' for i in range(30)]


def hf_dir(tmp_path, architecture, name):
    """A tiny random HuggingFace BERT directory (needs torch + transformers)."""
    pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    import torch
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=64)
    model = getattr(transformers, architecture)(config).eval()
    directory = tmp_path / name
    model.save_pretrained(str(directory))
    (directory / 'vocab.txt').write_text('\n'.join(VOCAB) + '\n')
    return str(directory), model


def batch():
    ids = np.array([[2, 5, 6, 7, 8, 9, 3, 10, 11, 3], [2, 12, 13, 6, 3, 14, 15, 3, 0, 0]])
    segments = np.array([[0] * 7 + [1] * 3, [0] * 5 + [1] * 3 + [0, 0]])
    valid = np.array([10, 8])
    return ids, segments, valid


def test_huggingface_directory_is_read_in_memory_with_its_heads(tmp_path):
    import torch
    directory, hf = hf_dir(tmp_path, 'BertForPreTraining', 'hf_pre')
    before = sorted(os.listdir(directory))
    found = locate(directory)
    assert found.kind == 'huggingface' and found.lower is True
    backbone = build(found)
    assert backbone.heads == ('pooler', 'decoder', 'classifier')
    assert sorted(os.listdir(directory)) == before            # nothing written
    ids, segments, valid = batch()
    positions = np.array([[1, 4], [2, 6]])
    seq, pooled, nsp, mlm = backbone.bert(*(mx.nd.array(a) for a in (ids, segments, valid,
                                                                     positions)))
    with torch.no_grad():
        out = hf(torch.tensor(ids), token_type_ids=torch.tensor(segments),
                 attention_mask=torch.tensor((np.arange(10) < valid[:, None]).astype(int)))
    logits = out.prediction_logits.numpy()
    picked = np.stack([logits[b, positions[b]] for b in range(2)])
    np.testing.assert_allclose(mlm.asnumpy(), picked, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(nsp.asnumpy(), out.seq_relationship_logits.numpy(), rtol=1e-4,
                               atol=2e-5)


def test_docs_snippet_loads_hf_weights_from_python(tmp_path):
    """The 'Loading HF weights from Python' block of docs/migrating.md, on a BertModel: equal
    to HF's last_hidden_state and pooler_output."""
    import re

    import torch
    directory, hf = hf_dir(tmp_path, 'BertModel', 'hf_base')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, 'docs', 'migrating.md'), encoding='utf-8') as f:
        code = re.search(r'<!-- tested: hf python -->\s*```python\n(.*?)```', f.read(),
                         re.S).group(1)
    namespace = {'HF_DIR': directory}
    exec(compile(code, 'docs/migrating.md (hf python)', 'exec'), namespace)
    assert namespace['tokens'][1:3] == ['a', 'crane']
    ids = torch.tensor(namespace['ids'].asnumpy().astype('int64'))
    with torch.no_grad():
        out = hf(ids)
    np.testing.assert_allclose(namespace['sequence'].asnumpy(), out.last_hidden_state.numpy(),
                               rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(namespace['pooled'].asnumpy(), out.pooler_output.numpy(),
                               rtol=1e-4, atol=2e-5)
    with pytest.raises(CheckpointError, match=r'model.safetensors has no masked-LM head'):
        load_pretrained(directory, use_decoder=True)


def _gluon_dir(directory, config, heads, extra_files):
    """A directory written as gluonbert writes it: config, vocabulary, parameters."""
    os.makedirs(directory, exist_ok=True)
    mx.random.seed(4)
    net = BERTModel(config, use_pooler='pooler' in heads, use_decoder='decoder' in heads,
                    use_classifier='classifier' in heads)
    net.initialize()
    with open(os.path.join(directory, 'gluonbert_config.json'), 'w') as f:
        json.dump(config.to_dict(), f)
    with open(os.path.join(directory, 'vocab.txt'), 'w') as f:
        f.write('\n'.join(VOCAB) + '\n')
    for name, text in extra_files.items():
        with open(os.path.join(directory, name), 'w') as f:
            f.write(text)
    return net


def _checkpoint(run_dir, step, net):
    """``checkpoints/step-N`` with the meta.json integrity record runs.find_latest checks."""
    from gluonbert.data.fileio import sha1_of_file
    from gluonbert.runs import CHECKPOINT_FORMAT
    path = os.path.join(run_dir, 'checkpoints', f'step-{step:08d}')
    os.makedirs(path)
    params = os.path.join(path, 'model.params')
    net.save_parameters(params)
    meta = {'format': CHECKPOINT_FORMAT, 'step': step,
            'files': {'model.params': {'bytes': os.path.getsize(params),
                                       'sha1': sha1_of_file(params)}}}
    with open(os.path.join(path, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    return path


def test_gluonbert_directories_of_every_kind(tmp_path):
    config = get_config('bert_tiny_test', vocab_size=len(VOCAB))
    ids, segments, valid = (mx.nd.array(a) for a in batch())
    # a stopped pretraining run: only a checkpoint, found through the run or directly
    run = str(tmp_path / 'pretrain')
    net = _gluon_dir(run, config, ('pooler', 'decoder', 'classifier'),
                     {'run.json': json.dumps({'task': 'pretrain'})})
    step = _checkpoint(run, 5, net)
    for path in (run, step):
        found = locate(path)
        assert (found.kind, found.directory, found.weights) == (
            'pretraining', os.path.abspath(run), os.path.join(step, 'model.params'))
    backbone = build(locate(run), use_decoder=False)
    assert backbone.heads == ('pooler', 'classifier')
    np.testing.assert_allclose(backbone.bert(ids, segments, valid)[0].asnumpy(),
                               net(ids, segments, valid)[0].asnumpy(), rtol=1e-5, atol=1e-6)
    # a converted sentence-embedding model without a pooler: fine-tuning gets a fresh one
    converted = str(tmp_path / 'converted')
    bare = _gluon_dir(converted, config, (), {})
    bare(ids, segments, valid)
    bare.save_parameters(os.path.join(converted, 'model.params'))
    assert locate(converted).kind == 'converted'
    assert build(converted).heads == ()
    with pytest.raises(CheckpointError, match='has no pooler'):
        build(converted, use_pooler=True)
    assert build(converted, use_pooler=True, fresh_pooler=True).heads == ('pooler',)
    # a fine-tuning run: the classifier's encoder (bert.*), its task head left out
    tuned = str(tmp_path / 'finetune')
    os.makedirs(tuned)
    clf = BERTClassifier(BERTModel(config, use_decoder=False, use_classifier=False), 2)
    clf.initialize()
    clf.save_parameters(os.path.join(tuned, 'model.params'))
    with open(os.path.join(tuned, 'vocab.txt'), 'w') as f:
        f.write('\n'.join(VOCAB) + '\n')
    info = {'bert': config.to_dict(), 'task': {'labels': ['0', '1']}, 'lower': False,
            'max_seq_length': 16, 'dropout': 0.1}
    with open(os.path.join(tuned, 'finetune.json'), 'w') as f:
        json.dump(info, f)
    found = locate(tuned)
    assert (found.kind, found.prefix, found.lower) == ('finetuned', 'bert.', False)
    encoder, _ = load_pretrained(tuned)
    np.testing.assert_allclose(encoder(ids, segments, valid)[1].asnumpy(),
                               clf.bert(ids, segments, valid)[1].asnumpy(), rtol=1e-5,
                               atol=1e-6)


def test_what_is_not_a_pretrained_directory(tmp_path):
    with pytest.raises(WeightsNotFoundError, match='no such directory; expected a HuggingFace'):
        locate(tmp_path / 'nowhere')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(WeightsNotFoundError, match='neither model.params nor a valid'):
        locate(tmp_path / 'empty')
    run = tmp_path / 'old_finetune'
    (run / 'checkpoints').mkdir(parents=True)
    (run / 'run.json').write_text(json.dumps({'task': 'finetune'}))
    net = BERTModel(get_config('bert_tiny_test'), use_decoder=False, use_classifier=False)
    net.initialize()
    _checkpoint(str(run), 3, net)
    with pytest.raises(WeightsNotFoundError, match=r'finetune.json: not found; expected the '
                                                   'description of this fine-tuning run'):
        locate(run)
