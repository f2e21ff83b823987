"""HuggingFace <-> gluonbert conversion, checked without torch.

A tiny random BERT is written as a HuggingFace directory (``safetensors.numpy``), converted, and
run through gluonbert; its outputs are compared with a pure-numpy BERT forward pass (post-LN,
erf GELU, key masking) written here, so these tests do not depend on torch or transformers.
"""
import json
import math
import os
import struct
import sys

import mxnet as mx
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gluonbert.cli import main
from gluonbert.errors import CheckpointError, ConfigError, WeightsNotFoundError
from gluonbert.model import BERTConfig
from gluonbert.model.convert import (convert_gluon_to_hf, convert_hf_to_gluon,
                                     gluon_to_hf_arrays, hf_to_gluon_arrays, load_converted,
                                     read_config)
from gluonbert.model.convert_hf import read_hf_weights

SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
WORDS = ['the', 'cat', 'sat', 'on', 'mat', 'a', 'dog', 'ran', 'home', 'quick', 'brown', 'fox',
         'jumps', 'over', 'lazy', '##s', '##ed', 'and', 'then', 'slept', '.', ',', 'it', 'was',
         'warm', 'day', 'night', 'he', 'she', 'they', 'we']
HF_TOKENS = SPECIALS + WORDS            # HF order: [PAD]=0 ... [MASK]=4, then words
C, FFN, LAYERS, HEADS, MAX_LEN = 32, 64, 2, 4, 16
HF_CONFIG = {'architectures': ['BertForPreTraining'], 'model_type': 'bert',
             'vocab_size': len(HF_TOKENS), 'hidden_size': C, 'intermediate_size': FFN,
             'num_hidden_layers': LAYERS, 'num_attention_heads': HEADS,
             'max_position_embeddings': MAX_LEN, 'type_vocab_size': 2, 'hidden_act': 'gelu',
             'hidden_dropout_prob': 0.1, 'attention_probs_dropout_prob': 0.1,
             'layer_norm_eps': 1e-12, 'pad_token_id': 0}


# --------------------------------------------------------------------------- fixtures

def random_hf_weights(seed=0, vocab_size=len(HF_TOKENS), heads=True):
    """Canonical HF names (no prefix, LayerNorm.weight/bias) -> float32 arrays."""
    rng = np.random.RandomState(seed)

    def dense(prefix, n_out, n_in):
        w[prefix + '.weight'] = rng.normal(0, 0.3, (n_out, n_in))
        w[prefix + '.bias'] = rng.normal(0, 0.1, (n_out,))

    def norm(prefix):
        w[prefix + '.weight'] = 1 + rng.normal(0, 0.1, (C,))
        w[prefix + '.bias'] = rng.normal(0, 0.1, (C,))

    w = {'embeddings.word_embeddings.weight': rng.normal(0, 0.5, (vocab_size, C)),
         'embeddings.token_type_embeddings.weight': rng.normal(0, 0.5, (2, C)),
         'embeddings.position_embeddings.weight': rng.normal(0, 0.5, (MAX_LEN, C))}
    norm('embeddings.LayerNorm')
    for i in range(LAYERS):
        p = f'encoder.layer.{i}.'
        for name in ('query', 'key', 'value'):
            dense(p + 'attention.self.' + name, C, C)
        dense(p + 'attention.output.dense', C, C)
        norm(p + 'attention.output.LayerNorm')
        dense(p + 'intermediate.dense', FFN, C)
        dense(p + 'output.dense', C, FFN)
        norm(p + 'output.LayerNorm')
    dense('pooler.dense', C, C)
    if heads:
        dense('cls.predictions.transform.dense', C, C)
        norm('cls.predictions.transform.LayerNorm')
        w['cls.predictions.bias'] = rng.normal(0, 0.1, (vocab_size,))
        dense('cls.seq_relationship', 2, C)
    return {k: v.astype(np.float32) for k, v in w.items()}


def hf_style(weights, prefix='', gamma=False, extras=True):
    """The same weights under another HF naming style."""
    out = {}
    for name, value in weights.items():
        if gamma:
            name = name.replace('LayerNorm.weight', 'LayerNorm.gamma').replace(
                'LayerNorm.bias', 'LayerNorm.beta')
        out[name if name.startswith('cls.') else prefix + name] = value
    if extras:
        out[prefix + 'embeddings.position_ids'] = np.arange(MAX_LEN, dtype=np.int64)[None]
        if 'cls.predictions.bias' in weights:   # tied copies, as older checkpoints store them
            out['cls.predictions.decoder.weight'] = weights['embeddings.word_embeddings.weight']
            out['cls.predictions.decoder.bias'] = weights['cls.predictions.bias']
    return out


def write_hf_dir(path, state, tokens=HF_TOKENS, config=HF_CONFIG, weights=True):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(config, f)
    with open(os.path.join(path, 'vocab.txt'), 'w') as f:
        f.write('\n'.join(tokens) + '\n')
    with open(os.path.join(path, 'tokenizer_config.json'), 'w') as f:
        json.dump({'do_lower_case': True}, f)
    if weights:
        save_file(state, os.path.join(path, 'model.safetensors'))
    return str(path)


# --------------------------------------------------------------------------- numpy reference

_erf = np.vectorize(math.erf)


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def reference_bert(w, ids, types, valid, masked, eps=1e-12, heads=HEADS):
    """BERT forward in float64 numpy: (sequence, pooled, nsp, mlm)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + '.weight'] + w[p + '.bias']

    def lin(x, p):
        return x @ w[p + '.weight'].T + w[p + '.bias']

    batch, length = ids.shape
    x = (w['embeddings.word_embeddings.weight'][ids]
         + w['embeddings.token_type_embeddings.weight'][types]
         + w['embeddings.position_embeddings.weight'][:length])
    x = ln(x, 'embeddings.LayerNorm')
    keep = np.arange(length)[None, :] < np.asarray(valid)[:, None]            # (B, T) keys
    d = C // heads
    for i in range(LAYERS):
        p = f'encoder.layer.{i}.'

        def split(h):
            return h.reshape(batch, length, heads, d).transpose(0, 2, 1, 3)   # (B, H, T, d)
        q, k, v = (split(lin(x, p + 'attention.self.' + n)) for n in ('query', 'key', 'value'))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        scores = np.where(keep[:, None, None, :], scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, C)
        x = ln(x + lin(ctx, p + 'attention.output.dense'), p + 'attention.output.LayerNorm')
        h = _gelu(lin(x, p + 'intermediate.dense'))
        x = ln(x + lin(h, p + 'output.dense'), p + 'output.LayerNorm')
    pooled = np.tanh(lin(x[:, 0], 'pooler.dense'))
    nsp = lin(pooled, 'cls.seq_relationship') if 'cls.seq_relationship.weight' in w else None
    mlm = None
    if 'cls.predictions.bias' in w:
        picked = x[np.arange(batch)[:, None], masked]
        h = ln(_gelu(lin(picked, 'cls.predictions.transform.dense')),
               'cls.predictions.transform.LayerNorm')
        mlm = h @ w['embeddings.word_embeddings.weight'].T + w['cls.predictions.bias']
    return x, pooled, nsp, mlm


def batch_inputs(vocab_ids):
    """Three sentence pairs of tokens, padded; returns numpy (ids, types, valid, masked)."""
    pairs = [(['the', 'quick', 'brown', 'fox', 'jumps'], ['over', 'the', 'lazy', 'dog', '.']),
             (['she', 'sat', 'on', 'the', 'mat'], ['it', 'was', 'warm'],),
             (['we', 'ran', 'home'], ['[MASK]'])]
    rows, types = [], []
    for a, b in pairs:
        tokens = ['[CLS]'] + a + ['[SEP]'] + b + ['[SEP]']
        rows.append([vocab_ids[t] for t in tokens])
        types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
    length = max(map(len, rows))
    valid = np.array([len(r) for r in rows])
    pad = vocab_ids['[PAD]']
    ids = np.array([r + [pad] * (length - len(r)) for r in rows])
    types = np.array([t + [0] * (length - len(t)) for t in types])
    masked = np.array([[1, 3, 7], [2, 5, 0], [4, 1, 2]])
    return ids, types, valid, masked


def run_ours(model, ids, types, valid, masked):
    outputs = model(mx.nd.array(ids), mx.nd.array(types), mx.nd.array(valid),
                    mx.nd.array(masked))
    return [o.asnumpy() for o in outputs]


def assert_valid_close(ours, ref, valid, atol):
    for b, n in enumerate(valid):
        np.testing.assert_allclose(ours[b, :n], ref[b, :n], atol=atol, rtol=0)


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize('prefix,gamma,heads', [('', False, False), ('', True, False),
                                                ('bert.', False, True), ('bert.', True, True)])
def test_hf_to_gluon_matches_numpy_reference(tmp_path, prefix, gamma, heads):
    weights = random_hf_weights(heads=heads)
    hf_dir = write_hf_dir(tmp_path / 'hf', hf_style(weights, prefix, gamma))
    result = convert_hf_to_gluon(hf_dir, tmp_path / 'gl')
    assert result.heads == (('pooler', 'decoder', 'classifier') if heads else ('pooler',))
    assert result.config == BERTConfig.from_hf_config(HF_CONFIG)
    model, vocab = load_converted(result.directory)
    assert list(vocab.idx_to_token) == HF_TOKENS
    ids, types, valid, masked = batch_inputs(vocab.token_to_idx)
    seq_ref, pooled_ref, nsp_ref, mlm_ref = reference_bert(weights, ids, types, valid, masked)
    if heads:
        seq, pooled, nsp, mlm = run_ours(model, ids, types, valid, masked)
        np.testing.assert_allclose(nsp, nsp_ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(mlm, mlm_ref, atol=1e-4, rtol=0)
    else:
        seq, pooled = [o.asnumpy() for o in model(mx.nd.array(ids), mx.nd.array(types),
                                                   mx.nd.array(valid))]
    assert_valid_close(seq, seq_ref, valid, atol=1e-5)
    np.testing.assert_allclose(pooled, pooled_ref, atol=1e-5, rtol=0)
    assert np.abs(seq_ref).max() > 0.5 and np.abs(pooled_ref).max() > 0.1  # not degenerate


def test_gluon_to_hf_round_trip_is_exact(tmp_path):
    weights = random_hf_weights(seed=1)
    hf_dir = write_hf_dir(tmp_path / 'hf', hf_style(weights, 'bert.'))
    result = convert_hf_to_gluon(hf_dir, tmp_path / 'gl')
    out = convert_gluon_to_hf(result.params, result.vocab_txt, tmp_path / 'hf2')
    back = load_file(os.path.join(out, 'model.safetensors'))
    expected = {k if k.startswith('cls.') else 'bert.' + k: v for k, v in weights.items()}
    assert sorted(back) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    with open(os.path.join(out, 'config.json')) as f:
        hf_config = json.load(f)
    assert hf_config['architectures'] == ['BertForPreTraining']
    assert BERTConfig.from_hf_config(hf_config) == result.config
    with open(os.path.join(out, 'vocab.txt')) as f:
        assert f.read().split('\n')[:-1] == HF_TOKENS
    with open(os.path.join(out, 'tokenizer_config.json')) as f:
        assert json.load(f)['do_lower_case'] is True


def test_gluon_model_without_heads_exports_bertmodel_names(tmp_path):
    weights = random_hf_weights(seed=2, heads=False)
    hf_dir = write_hf_dir(tmp_path / 'hf', weights)
    model, vocab = load_converted(convert_hf_to_gluon(hf_dir, tmp_path / 'gl').directory)
    out = convert_gluon_to_hf(model, vocab, tmp_path / 'hf2')
    back = load_file(os.path.join(out, 'model.safetensors'))
    assert sorted(back) == sorted(weights)
    assert json.load(open(os.path.join(out, 'config.json')))['architectures'] == ['BertModel']


def test_shape_mismatch_names_parameter_and_both_shapes(tmp_path):
    weights = random_hf_weights()
    weights['encoder.layer.1.attention.self.key.weight'] = np.zeros((C, C - 2), np.float32)
    hf_dir = write_hf_dir(tmp_path / 'hf', hf_style(weights, 'bert.'))
    with pytest.raises(CheckpointError) as err:
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')
    message = str(err.value)
    assert 'bert.encoder.layer.1.attention.self.key.weight' in message
    assert f'({C}, {C - 2})' in message and f'({C}, {C})' in message
    assert 'model.safetensors' in message


def test_checkpoint_with_fewer_layers_than_config_lists_missing(tmp_path):
    weights = {k: v for k, v in random_hf_weights(heads=False).items()
               if not k.startswith('encoder.layer.1.')}
    hf_dir = write_hf_dir(tmp_path / 'hf', weights)
    with pytest.raises(CheckpointError, match=r'missing parameter encoder\.layer\.1\.'
                                              r'attention\.self\.query\.weight'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')


def test_incomplete_head_is_an_error(tmp_path):
    weights = random_hf_weights()
    del weights['cls.predictions.transform.dense.bias']
    hf_dir = write_hf_dir(tmp_path / 'hf', weights)
    with pytest.raises(CheckpointError, match=r'missing parameter cls\.predictions\.transform'
                                              r'\.dense\.bias of the decoder head'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')


def test_vocab_size_disagreeing_with_vocab_txt(tmp_path):
    hf_dir = write_hf_dir(tmp_path / 'hf', random_hf_weights(), tokens=HF_TOKENS[:-1])
    with pytest.raises(CheckpointError, match=f'{len(HF_TOKENS) - 1} tokens.*vocab_size='
                                              f'{len(HF_TOKENS)}'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')


def test_missing_files_are_named(tmp_path):
    hf_dir = write_hf_dir(tmp_path / 'hf', random_hf_weights(), weights=False)
    with pytest.raises(WeightsNotFoundError, match='model.safetensors'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')
    os.remove(os.path.join(hf_dir, 'config.json'))
    with pytest.raises(ConfigError, match=r'config\.json'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')
    with pytest.raises(WeightsNotFoundError, match='no such directory'):
        convert_hf_to_gluon(tmp_path / 'absent', tmp_path / 'gl')


def test_task_head_refused_unless_ignore_extra(tmp_path):
    state = hf_style(random_hf_weights(heads=False), 'bert.')
    state['classifier.weight'] = np.zeros((3, C), np.float32)   # BertForSequenceClassification
    state['classifier.bias'] = np.zeros((3,), np.float32)
    hf_dir = write_hf_dir(tmp_path / 'hf', state)
    with pytest.raises(CheckpointError, match=r'classifier\.bias, classifier\.weight'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')
    result = convert_hf_to_gluon(hf_dir, tmp_path / 'gl', ignore_extra=True)
    assert result.heads == ('pooler',)


def test_untied_mlm_output_weight_refused(tmp_path):
    weights = random_hf_weights()
    state = hf_style(weights, 'bert.')
    state['cls.predictions.decoder.weight'] = state['cls.predictions.decoder.weight'] + 1
    hf_dir = write_hf_dir(tmp_path / 'hf', state)
    with pytest.raises(CheckpointError, match='differs from the word embedding'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')


def test_untied_mlm_output_weight_round_trip(tmp_path):
    """With tie_word_embeddings=false in the config, the HF output weight is the head's own
    decoder.3.weight, both ways; without it in the file, the head is incomplete."""
    weights = random_hf_weights()
    state = hf_style(weights, 'bert.')
    state['cls.predictions.decoder.weight'] = state['cls.predictions.decoder.weight'] + 1
    config = BERTConfig.from_hf_config(dict(HF_CONFIG, tie_word_embeddings=False))
    arrays = hf_to_gluon_arrays(state, config)
    np.testing.assert_array_equal(arrays['decoder.3.weight'],
                                  state['cls.predictions.decoder.weight'])
    back = gluon_to_hf_arrays(arrays, config.num_layers, prefix='bert.',
                              tie_word_embeddings=False)
    np.testing.assert_array_equal(back['cls.predictions.decoder.weight'],
                                  state['cls.predictions.decoder.weight'])
    del state['cls.predictions.decoder.weight']
    with pytest.raises(CheckpointError, match='tie_word_embeddings=false'):
        hf_to_gluon_arrays(state, config)


def _gluonnlp_order_vocab(path):
    """A GluonNLP-built BERTVocab (its own special-token order) saved as .vocab JSON."""
    from gluonnlp.data import count_tokens
    from gluonnlp.vocab import BERTVocab
    counts = count_tokens(list(reversed(WORDS)) + WORDS[::3])   # another frequency order
    vocab = BERTVocab(counts)
    with open(path, 'w') as f:
        f.write(vocab.to_json())
    return vocab


def test_target_vocab_permutes_rows_by_token(tmp_path):
    weights = random_hf_weights(seed=3)
    hf_dir = write_hf_dir(tmp_path / 'hf', hf_style(weights, 'bert.'))
    target = _gluonnlp_order_vocab(tmp_path / 'target.vocab')
    assert sorted(target.idx_to_token) == sorted(HF_TOKENS)
    moved = [t for t in SPECIALS if target.token_to_idx[t] != HF_TOKENS.index(t)]
    assert len(moved) >= 4, moved                      # special tokens really sit elsewhere
    source_model, source_vocab = load_converted(
        convert_hf_to_gluon(hf_dir, tmp_path / 'src').directory)
    result = convert_hf_to_gluon(hf_dir, tmp_path / 'tgt', target_vocab=tmp_path / 'target.vocab')
    model, vocab = load_converted(result.directory)
    assert list(vocab.idx_to_token) == list(target.idx_to_token)
    with open(result.vocab_txt) as f:
        assert f.read().split('\n')[:-1] == list(target.idx_to_token)
    # The same text encoded with each vocabulary gives the same outputs.
    ids_s, types, valid, masked = batch_inputs(source_vocab.token_to_idx)
    ids_t, _, _, _ = batch_inputs(vocab.token_to_idx)
    assert not np.array_equal(ids_s, ids_t)
    out_s = run_ours(source_model, ids_s, types, valid, masked)
    out_t = run_ours(model, ids_t, types, valid, masked)
    for a, b in zip(out_s[:3], out_t[:3]):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    # MLM scores: column of token t in the target = column of t in the source.
    columns = [source_vocab.token_to_idx[t] for t in vocab.idx_to_token]
    np.testing.assert_allclose(out_t[3], out_s[3][..., columns], atol=1e-5, rtol=0)


def test_target_vocab_with_unknown_tokens_lists_them(tmp_path):
    from gluonnlp.data import count_tokens
    from gluonnlp.vocab import BERTVocab
    hf_dir = write_hf_dir(tmp_path / 'hf', random_hf_weights())
    target = BERTVocab(count_tokens(WORDS + ['zebra', 'giraffe']))
    with pytest.raises(CheckpointError, match=r"2 tokens.*'zebra'") as err:
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl', target_vocab=target)
    assert 'giraffe' in str(err.value)


def test_sharded_and_bf16_safetensors(tmp_path):
    weights = random_hf_weights(seed=4, heads=False)
    names = sorted(weights)
    hf_dir = write_hf_dir(tmp_path / 'hf', {}, weights=False)
    half = len(names) // 2
    shards = {'model-00001-of-00002.safetensors': names[:half],
              'model-00002-of-00002.safetensors': names[half:]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, os.path.join(hf_dir, shard))
    with open(os.path.join(hf_dir, 'model.safetensors.index.json'), 'w') as f:
        json.dump({'weight_map': {k: s for s, ks in shards.items() for k in ks}}, f)
    model, _ = load_converted(convert_hf_to_gluon(hf_dir, tmp_path / 'gl').directory)
    np.testing.assert_array_equal(model.encoder.position_weight.data().asnumpy(),
                                  weights['embeddings.position_embeddings.weight'])
    # bfloat16: numpy cannot write it, so build the file by hand (header + raw bytes).
    values = weights['pooler.dense.weight']
    bits = (values.view(np.uint32) >> 16).astype('<u2')
    header = json.dumps({'w': {'dtype': 'BF16', 'shape': list(values.shape),
                               'data_offsets': [0, bits.nbytes]}}).encode()
    path = tmp_path / 'bf16.safetensors'
    path.write_bytes(struct.pack('<Q', len(header)) + header + bits.tobytes())
    read = read_hf_weights(str(path))['w']
    assert read.dtype == np.float32
    np.testing.assert_allclose(read, values, rtol=2 ** -7, atol=0)
    assert not np.array_equal(read, values)


def test_pytorch_bin_needs_torch(tmp_path, monkeypatch):
    hf_dir = write_hf_dir(tmp_path / 'hf', {}, weights=False)
    (tmp_path / 'hf' / 'pytorch_model.bin').write_bytes(b'not read')
    monkeypatch.setitem(sys.modules, 'torch', None)      # import torch -> ImportError
    with pytest.raises(CheckpointError, match='needs torch'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl')


def test_pytorch_bin_read_with_weights_only(tmp_path):
    torch = pytest.importorskip('torch')
    weights = random_hf_weights(seed=5)
    hf_dir = write_hf_dir(tmp_path / 'hf', {}, weights=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v))
             for k, v in hf_style(weights, 'bert.', gamma=True).items()}
    torch.save(state, os.path.join(hf_dir, 'pytorch_model.bin'))
    model, vocab = load_converted(convert_hf_to_gluon(hf_dir, tmp_path / 'gl').directory)
    ids, types, valid, masked = batch_inputs(vocab.token_to_idx)
    _, pooled_ref, nsp_ref, _ = reference_bert(weights, ids, types, valid, masked)
    _, pooled, nsp, _ = run_ours(model, ids, types, valid, masked)
    np.testing.assert_allclose(nsp, nsp_ref, atol=1e-5, rtol=0)
    # A pickle that is not plain tensors is refused (weights_only=True), not executed.
    torch.save({'x': torch.zeros(2), 'hook': _Evil()}, os.path.join(hf_dir, 'pytorch_model.bin'))
    with pytest.raises(CheckpointError, match='weights_only=True'):
        convert_hf_to_gluon(hf_dir, tmp_path / 'gl2')


class _Evil:
    pass


def test_read_config_accepts_ours_and_hf(tmp_path):
    ours = BERTConfig.from_hf_config(HF_CONFIG)
    (tmp_path / 'ours.json').write_text(json.dumps(ours.to_dict()))
    (tmp_path / 'hf.json').write_text(json.dumps(HF_CONFIG))
    assert read_config(tmp_path / 'ours.json') == ours == read_config(tmp_path / 'hf.json')
    with pytest.raises(ConfigError, match='nope.json'):
        read_config(tmp_path / 'nope.json')


def test_cli_convert_both_ways(tmp_path, capsys):
    weights = random_hf_weights(seed=6)
    hf_dir = write_hf_dir(tmp_path / 'hf', hf_style(weights, 'bert.', gamma=True))
    gl = tmp_path / 'gl'
    assert main(['convert', '--from-hf', hf_dir, '--out-dir', str(gl)]) == 0
    assert 'heads: pooler, decoder, classifier' in capsys.readouterr().out
    out = tmp_path / 'back'
    assert main(['convert', '--to-hf', str(gl / 'model.params'), '--vocab',
                 str(gl / 'model.vocab'), '--config', str(gl / 'gluonbert_config.json'),
                 '--out-dir', str(out), '--cased']) == 0
    back = load_file(str(out / 'model.safetensors'))
    np.testing.assert_array_equal(back['bert.encoder.layer.1.output.LayerNorm.weight'],
                                  weights['encoder.layer.1.output.LayerNorm.weight'])
    assert json.load(open(out / 'tokenizer_config.json'))['do_lower_case'] is False
    # Errors: a message naming the problem, exit status 2.
    assert main(['convert', '--from-hf', str(tmp_path / 'nowhere'), '--out-dir', str(gl)]) == 2
    assert 'nowhere: no such directory' in capsys.readouterr().err
    assert main(['convert', '--to-hf', str(gl / 'model.params'), '--out-dir', str(out)]) == 2
    assert '--vocab' in capsys.readouterr().err


def test_to_hf_refuses_params_that_do_not_fit_config(tmp_path):
    weights = random_hf_weights(seed=7, heads=False)
    result = convert_hf_to_gluon(write_hf_dir(tmp_path / 'hf', weights), tmp_path / 'gl')
    wrong = BERTConfig.from_hf_config(dict(HF_CONFIG, intermediate_size=FFN * 2))
    with pytest.raises(CheckpointError, match=r'ffn_1\.weight.*\(64, 32\).*\(128, 32\)'):
        convert_gluon_to_hf(result.params, result.vocab_json, tmp_path / 'out', config=wrong)
