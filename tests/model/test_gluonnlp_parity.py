"""Checkpoints move both ways between GluonNLP 0.10's BERT and gluonbert, with equal outputs.

GluonNLP's model is built offline (``dataset_name=None``, a tiny vocabulary, a tiny config via
``hparam_allow_override``) and filled with random weights; its ``save_parameters`` file loads
into gluonbert (strictly), and gluonbert's file loads into GluonNLP (strictly).
"""
import gluonnlp
import mxnet as mx
import numpy as np
import pytest
from gluonnlp.data import count_tokens
from gluonnlp.vocab import BERTVocab

import gluonbert
from gluonbert.model import BERTClassifier, BERTModel, get_config

TINY = dict(num_layers=2, units=32, hidden_size=64, num_heads=4, max_length=64)
WORDS = ('the quick brown fox jumps over the lazy dog and then the cat sat on the mat while '
         'it rained all night long').split()


@pytest.fixture(scope='module')
def vocab():
    return BERTVocab(count_tokens(WORDS))


def config_for(vocab):
    return get_config('bert_tiny_test', vocab_size=len(vocab), units=TINY['units'],
                      hidden_size=TINY['hidden_size'], num_layers=TINY['num_layers'],
                      num_heads=TINY['num_heads'], max_length=TINY['max_length'], dropout=0.0,
                      layer_norm_eps=1e-12)


def gluonnlp_bert(vocab, use_pooler=True, use_decoder=True, use_classifier=True):
    model, _ = gluonnlp.model.get_model(
        'bert_12_768_12', dataset_name=None, vocab=vocab, pretrained=False,
        hparam_allow_override=True, embed_size=TINY['units'], dropout=0.0, layer_norm_eps=1e-12,
        use_pooler=use_pooler, use_decoder=use_decoder, use_classifier=use_classifier, **TINY)
    return model


def randomize(block, seed, vocab):
    """Every parameter (biases, LayerNorm gains too) drawn from N(0, 0.3) (gains 1 + that)."""
    rng = np.random.RandomState(seed)
    block.initialize(mx.init.Zero(), force_reinit=True)
    ids, types, valid, masked = inputs(vocab)
    try:                                  # GluonNLP defers some shapes to the first call
        block(ids, types, valid, masked)
    except (TypeError, mx.base.MXNetError):
        block(ids, types, valid)
    seen = set()
    for name, param in sorted(block.collect_params().items()):
        if id(param) in seen:
            continue
        seen.add(id(param))
        values = rng.normal(0, 0.3, param.shape) + (1.0 if name.endswith('gamma') else 0.0)
        param.set_data(mx.nd.array(values))


def inputs(vocab):
    rng = np.random.RandomState(0)
    batch, length = 3, 12
    ids = rng.randint(0, len(vocab), (batch, length))
    types = np.zeros((batch, length))
    types[:, 6:] = 1
    valid = np.array([12, 9, 5])
    masked = np.array([[1, 4, 11], [0, 3, 8], [2, 2, 4]])
    return [mx.nd.array(a) for a in (ids, types, valid, masked)]


def outputs(model, ids, types, valid, masked=None):
    args = (ids, types, valid) if masked is None else (ids, types, valid, masked)
    out = model(*args)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [o.asnumpy() for o in out]


def max_diff(a_outputs, b_outputs):
    """Largest |a - b| over every output (sequence, pooled, NSP, MLM); printed for -s runs."""
    assert len(a_outputs) == len(b_outputs)
    diffs = []
    for a, b in zip(a_outputs, b_outputs):
        assert a.shape == b.shape
        diffs.append(float(np.abs(a - b).max()))
    print(f'max abs diff per output: {["%.3g" % d for d in diffs]}')
    return max(diffs)


HEADS = [dict(use_pooler=True, use_decoder=True, use_classifier=True),
         dict(use_pooler=True, use_decoder=False, use_classifier=False),
         dict(use_pooler=False, use_decoder=False, use_classifier=False)]


@pytest.mark.parametrize('heads', HEADS, ids=['all-heads', 'pooler', 'encoder'])
def test_gluonnlp_checkpoint_loads_into_gluonbert(tmp_path, vocab, heads):
    theirs = gluonnlp_bert(vocab, **heads)
    randomize(theirs, seed=1, vocab=vocab)
    path = str(tmp_path / 'gluonnlp.params')
    theirs.save_parameters(path)
    ours = BERTModel(config_for(vocab), **heads)
    ours.load_parameters(path)                               # strict: no missing, no extra
    ids, types, valid, masked = inputs(vocab)
    masked = masked if heads['use_decoder'] else None
    expected = outputs(theirs, ids, types, valid, masked)
    got = outputs(ours, ids, types, valid, masked)
    assert max_diff(got, expected) < 1e-5                    # padded positions: both zero
    assert np.abs(expected[0]).max() > 0.5


@pytest.mark.parametrize('heads', HEADS[:2], ids=['all-heads', 'pooler'])
def test_gluonbert_checkpoint_loads_into_gluonnlp(tmp_path, vocab, heads):
    ours = BERTModel(config_for(vocab), **heads)
    randomize(ours, seed=2, vocab=vocab)
    path = str(tmp_path / 'gluonbert.params')
    ours.save_parameters(path)
    theirs = gluonnlp_bert(vocab, **heads)
    theirs.load_parameters(path)                             # GluonNLP's strict loader
    ids, types, valid, masked = inputs(vocab)
    masked = masked if heads['use_decoder'] else None
    assert max_diff(outputs(ours, ids, types, valid, masked),
                    outputs(theirs, ids, types, valid, masked)) < 1e-5


@pytest.mark.parametrize('dropout', [0.0, 0.1])
def test_classifier_checkpoint_both_ways(tmp_path, vocab, dropout):
    no_heads = dict(use_decoder=False, use_classifier=False)
    theirs = gluonnlp.model.BERTClassifier(gluonnlp_bert(vocab, **no_heads), num_classes=3,
                                           dropout=dropout)
    ours = BERTClassifier(BERTModel(config_for(vocab), **no_heads), num_classes=3,
                          dropout=dropout)
    ids, types, valid, _ = inputs(vocab)
    randomize(theirs, seed=3, vocab=vocab)
    theirs.save_parameters(str(tmp_path / 'theirs.params'))
    ours.load_parameters(str(tmp_path / 'theirs.params'))
    assert max_diff(outputs(ours, ids, types, valid), outputs(theirs, ids, types, valid)) < 1e-5
    randomize(ours, seed=4, vocab=vocab)
    ours.save_parameters(str(tmp_path / 'ours.params'))
    theirs.load_parameters(str(tmp_path / 'ours.params'))
    assert max_diff(outputs(ours, ids, types, valid), outputs(theirs, ids, types, valid)) < 1e-5


def test_get_model_matches_gluonnlp_get_model(tmp_path, vocab):
    """Same call shape as gluonnlp.model.get_model; the same weights give the same outputs."""
    theirs = gluonnlp_bert(vocab)
    randomize(theirs, seed=5, vocab=vocab)
    theirs.save_parameters(str(tmp_path / 'w.params'))
    ours, ours_vocab = gluonbert.get_model('bert_tiny_test', dataset_name=None, vocab=vocab,
                                           pretrained=False, dropout=0.0, **TINY)
    assert ours_vocab is vocab and ours.config.vocab_size == len(vocab)
    ours.load_parameters(str(tmp_path / 'w.params'))
    ids, types, valid, masked = inputs(vocab)
    assert max_diff(outputs(ours, ids, types, valid, masked),
                    outputs(theirs, ids, types, valid, masked)) < 1e-5
