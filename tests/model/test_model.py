"""The BERT blocks: shapes, hybridization, export, masking, heads and input errors."""
import mxnet as mx
import numpy as np
import pytest

from gluonbert.errors import CheckpointError, ConfigError, InputError
from gluonbert.model import (BERTClassifier, BERTConfig, BERTEncoder, BERTModel, MLMDecoder,
                             NSClassifier, get_config)

TINY = get_config('bert_tiny_test', dropout=0.0)


def _batch(seed=0, batch=3, length=12, vocab=TINY.vocab_size):
    rng = np.random.RandomState(seed)
    ids = rng.randint(5, vocab, size=(batch, length))
    valid = np.array([length, length - 4, 5][:batch])
    segments = np.zeros_like(ids)
    for i, n in enumerate(valid):
        ids[i, n:] = 0
        segments[i, n // 2:n] = 1
    positions = np.stack([rng.choice(n, size=3, replace=False) for n in valid])
    as_nd = lambda a: mx.nd.array(a, dtype='int32')  # noqa: E731
    return as_nd(ids), as_nd(segments), as_nd(valid), as_nd(positions)


def _model(**kwargs):
    mx.random.seed(7)
    net = BERTModel(TINY, **kwargs)
    net.initialize()
    return net


def test_output_shapes_follow_gluonnlp_order():
    ids, seg, valid, pos = _batch()
    seq, pooled, nsp, mlm = _model()(ids, seg, valid, pos)
    assert seq.shape == (3, 12, TINY.units)
    assert pooled.shape == (3, TINY.units)
    assert nsp.shape == (3, 2)
    assert mlm.shape == (3, 3, TINY.vocab_size)
    only_seq = _model(use_pooler=False, use_decoder=False, use_classifier=False)(ids, seg, valid)
    assert only_seq.shape == (3, 12, TINY.units)


def test_encoder_optional_outputs():
    ids, seg, valid, _ = _batch()
    enc = BERTEncoder(TINY, output_all_encodings=True, output_attention=True)
    enc.initialize()
    seq, layers, attention = enc(ids, seg, valid)
    assert len(layers) == len(attention) == TINY.num_layers
    assert np.allclose(layers[-1].asnumpy(), seq.asnumpy())
    assert attention[0].shape == (3, TINY.num_heads, 12, 12)
    weights = attention[0].asnumpy()
    # Rows sum to one over the valid keys; keys past valid_length get no weight.
    assert np.allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[2, :, :, 5:] == 0)


@pytest.mark.parametrize('kwargs', [{}, {'output_all_encodings': True, 'output_attention': True}])
def test_hybridized_equals_imperative(kwargs):
    ids, seg, valid, pos = _batch()
    net = _model(**kwargs)
    eager = net(ids, seg, valid, pos)
    net.hybridize(static_alloc=True, static_shape=True)
    for _ in range(2):  # the second call runs the cached graph
        hybrid = net(ids, seg, valid, pos)
    flat = lambda outs: [x for o in outs for x in (o if isinstance(o, list) else [o])]  # noqa
    for a, b in zip(flat(eager), flat(hybrid)):
        assert np.array_equal(a.asnumpy(), b.asnumpy())


def test_export_and_symbolblock_imports(tmp_path):
    ids, seg, valid, pos = _batch()
    net = _model()
    net.hybridize(static_alloc=True, static_shape=True)
    expected = net(ids, seg, valid, pos)
    net.export(str(tmp_path / 'bert'), epoch=0)
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / 'bert-symbol.json'),
                                          ['data0', 'data1', 'data2', 'data3'],
                                          str(tmp_path / 'bert-0000.params'))
    got = loaded(ids, seg, valid, pos)
    for a, b in zip(expected, got):
        assert np.array_equal(a.asnumpy(), b.asnumpy())


def test_padding_does_not_change_valid_positions():
    ids, seg, valid, pos = _batch()
    net = _model()
    seq, pooled, nsp, mlm = net(ids, seg, valid, pos)
    noisy = ids.asnumpy().copy()
    noisy[1, 8:] = 42  # change padding tokens only (valid length of row 1 is 8)
    seq2, pooled2, _, mlm2 = net(mx.nd.array(noisy, dtype='int32'), seg, valid, pos)
    assert np.allclose(seq.asnumpy()[1, :8], seq2.asnumpy()[1, :8], atol=1e-6)
    assert np.allclose(pooled.asnumpy(), pooled2.asnumpy(), atol=1e-6)
    assert np.allclose(mlm.asnumpy(), mlm2.asnumpy(), atol=1e-5)
    assert np.all(seq.asnumpy()[1, 8:] == 0)  # padded outputs are zeroed, as in GluonNLP


def test_mlm_decoder_gathers_masked_positions_and_ties_weights():
    net = _model()
    decoder = net.decoder
    assert decoder[3].weight is net.encoder.word_embedding.weight
    seq = mx.nd.random.normal(shape=(2, 6, TINY.units))
    positions = mx.nd.array([[5, 0], [2, 2]], dtype='int32')
    scores = decoder(seq, positions).asnumpy()
    # Same as running the head on the hand-picked vectors.
    picked = mx.nd.stack(seq[0, 5], seq[0, 0], seq[1, 2], seq[1, 2]).reshape((2, 2, -1))
    head = picked
    for layer in decoder:
        head = layer(head)
    assert np.allclose(scores, head.asnumpy(), atol=1e-5)
    with pytest.raises(InputError, match=r'masked_positions contains 6'):
        decoder(seq, mx.nd.array([[6, 0], [1, 1]], dtype='int32'))


def test_tied_weight_gets_gradients_from_both_uses():
    ids, seg, valid, pos = _batch()
    net = _model()
    with mx.autograd.record():
        mlm = net(ids, seg, valid, pos)[3]
        loss = mlm.sum()
    loss.backward()
    grad = net.encoder.word_embedding.weight.grad().asnumpy()
    # Rows of tokens that never occur in the input still get gradient from the output layer.
    unused = sorted(set(range(TINY.vocab_size)) - set(ids.asnumpy().ravel().astype(int)))
    assert np.abs(grad[unused]).sum() > 0


def test_untied_output_weight_leaves_unused_embedding_rows_alone(tmp_path):
    """tie_word_embeddings=False: the MLM head has its own (V, C) weight, saved under
    decoder.3.weight; the output softmax no longer moves the embedding rows of tokens absent
    from the input (the tied model's test above shows that it does when tied)."""
    ids, seg, valid, pos = _batch()
    mx.random.seed(7)
    net = BERTModel(TINY.replace(tie_word_embeddings=False))
    net.initialize()
    assert net.decoder[3].weight is not net.encoder.word_embedding.weight
    assert net.decoder[3].weight.shape == (TINY.vocab_size, TINY.units)
    with mx.autograd.record():
        loss = net(ids, seg, valid, pos)[3].sum()
    loss.backward()
    grad = net.encoder.word_embedding.weight.grad().asnumpy()
    used = sorted(set(ids.asnumpy().ravel().astype(int)))
    unused = sorted(set(range(TINY.vocab_size)) - set(used))
    assert np.abs(grad[unused]).sum() == 0 and np.abs(grad[used]).sum() > 0
    assert np.abs(net.decoder[3].weight.grad().asnumpy()[unused]).sum() > 0
    path = str(tmp_path / 'untied.params')
    net.save_parameters(path)
    assert 'decoder.3.weight' in mx.nd.load(path)
    again = BERTModel(TINY.replace(tie_word_embeddings=False))
    again.load_parameters(path)
    np.testing.assert_array_equal(again.decoder[3].weight.data().asnumpy(),
                                  net.decoder[3].weight.data().asnumpy())
    tied = BERTModel(TINY)                  # the two tables cannot become one silently
    with pytest.raises(CheckpointError, match='word_embed.0.weight and decoder.3.weight are '
                                              r'one \(tied\) parameter'):
        tied.load_parameters(path)
    tied.initialize()
    tied.save_parameters(path)              # a tied checkpoint fits an untied model
    again.load_parameters(path)
    np.testing.assert_array_equal(again.decoder[3].weight.data().asnumpy(),
                                  again.encoder.word_embedding.weight.data().asnumpy())


def test_ns_classifier_uses_first_token():
    nsp = NSClassifier(TINY.units)
    nsp.initialize()
    seq = mx.nd.random.normal(shape=(2, 5, TINY.units))
    pooled, scores = nsp(seq)                # BERTModel's order: pooled, then NSP scores
    changed = seq.copy()
    changed[:, 1:] = 0
    pooled2, scores2 = nsp(changed)
    assert scores.shape == (2, 2) and pooled.shape == (2, TINY.units)
    assert np.allclose(scores.asnumpy(), scores2.asnumpy())
    assert np.allclose(pooled.asnumpy(), np.tanh(
        seq[:, 0].asnumpy() @ nsp.pooler.weight.data().asnumpy().T
        + nsp.pooler.bias.data().asnumpy()), atol=1e-6)


def test_classifier_shapes_and_gluonnlp_names(tmp_path):
    ids, seg, valid, _ = _batch()
    clf = BERTClassifier(_model(use_decoder=False, use_classifier=False), num_classes=3,
                         dropout=0.1)
    clf.classifier.initialize()
    assert clf(ids, seg, valid).shape == (3, 3)
    names = set(clf._collect_params_with_prefix())
    assert {'bert.word_embed.0.weight', 'bert.pooler.weight', 'classifier.1.weight'} <= names
    clf.save_parameters(str(tmp_path / 'clf.params'))
    saved = mx.nd.load(str(tmp_path / 'clf.params'))
    assert set(saved) == names


def test_checkpoint_roundtrip_and_shape_errors(tmp_path):
    ids, seg, valid, pos = _batch()
    net = _model()
    expected = net(ids, seg, valid, pos)[3].asnumpy()
    path = str(tmp_path / 'bert.params')
    net.save_parameters(path)
    saved = mx.nd.load(path)
    assert 'word_embed.0.weight' in saved and 'decoder.3.weight' in saved
    again = BERTModel(TINY)
    again.load_parameters(path)
    assert np.array_equal(again(ids, seg, valid, pos)[3].asnumpy(), expected)

    wider = BERTModel(TINY.replace(hidden_size=48))
    with pytest.raises(CheckpointError) as err:
        wider.load_parameters(path)
    message = str(err.value)
    assert 'encoder.transformer_cells.0.ffn.ffn_1.weight' in message
    assert '(64, 32)' in message and '(48, 32)' in message

    no_heads = BERTModel(TINY, use_decoder=False, use_classifier=False)
    with pytest.raises(CheckpointError, match='not in the model'):
        no_heads.load_parameters(path)
    no_heads.load_parameters(path, ignore_extra=True)


@pytest.mark.parametrize('make, pattern', [
    (lambda ids, seg: (ids + 200, seg), r'token_ids contains 2\d\d; expected ids in \[0, 100\)'),
    (lambda ids, seg: (ids, seg + 2), r'segment_ids contains [23]; expected ids in \[0, 2\)'),
    (lambda ids, seg: (ids, seg[:, :5]), r'segment_ids has shape \(3, 5\) but token_ids'),
    (lambda ids, seg: (mx.nd.concat(ids, ids, ids, ids, ids, ids, dim=1),
                       mx.nd.concat(seg, seg, seg, seg, seg, seg, dim=1)),
     r'sequence length 72 exceeds the position table of 64 rows'),
])
def test_bad_inputs_get_clear_errors(make, pattern):
    ids, seg, valid, pos = _batch()
    net = _model()
    bad_ids, bad_seg = make(ids, seg)
    with pytest.raises(InputError, match=pattern):
        net(bad_ids, bad_seg, valid, pos)


@pytest.mark.parametrize('hybridize', [False, True])
def test_optional_inputs_are_optional_in_every_block(hybridize):
    """valid_length=None means full length in BERTEncoder as in BERTModel; without
    masked_positions a model with the MLM head returns the other outputs (d2l's behaviour),
    with one graph for both calls."""
    ids, seg, valid, pos = _batch()
    net = _model()
    if hybridize:
        net.hybridize(static_alloc=True)
    full = mx.nd.full((ids.shape[0],), ids.shape[1], dtype='int32')
    with_mlm = net(ids, seg, full, pos)
    without = net(ids, seg)
    assert len(with_mlm) == 4 and len(without) == 3
    for a, b in zip(with_mlm[:3], without):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)
    assert net(ids, seg, full, pos)[3].shape == (ids.shape[0], pos.shape[1], TINY.vocab_size)
    encoder = net.encoder
    np.testing.assert_allclose(encoder(ids, seg).asnumpy(), with_mlm[0].asnumpy(),
                               rtol=1e-5, atol=1e-6)
    decoder_only = BERTModel(TINY, use_pooler=False, use_classifier=False)
    decoder_only.initialize()
    assert decoder_only(ids, seg).shape == (ids.shape[0], ids.shape[1], TINY.units)
    with pytest.raises(InputError, match=r'valid_length contains'):
        _model(use_decoder=False)(ids, seg, valid + 20)


def test_numpy_mode_is_refused_once_with_its_name():
    """d2l runs under npx.set_np(): building a block says so, instead of a TypeError inside
    initialize; an mx.np array given to a classic-mode block is refused as clearly."""
    from mxnet import npx
    net = _model()
    npx.set_np()
    try:
        with pytest.raises(ConfigError, match=r'BERTEncoder: MXNet NumPy mode is on '
                                              r'\(npx.set_np\(\)\).*npx.reset_np\(\)'):
            BERTModel(TINY)
        with pytest.raises(ConfigError, match='NSClassifier: MXNet NumPy mode'):
            NSClassifier(TINY.units)
    finally:
        npx.reset_np()
    ids, seg, _, _ = _batch()
    with pytest.raises(InputError, match=r'mx.np.ndarray \(3, 12\).*as_nd_ndarray'):
        net(ids.as_np_ndarray(), seg.as_np_ndarray())
    arr = mx.np.zeros((50, 4))              # TruncNorm fills an mx.np array too
    from gluonbert.model.init import TruncNorm
    TruncNorm(0.02)._init_weight('w', arr)
    values = arr.asnumpy()
    assert 0 < np.abs(values).max() <= 0.04 and values.std() > 0.005


def test_config_validation_and_hf_config(tmp_path):
    with pytest.raises(ConfigError, match='not divisible'):
        BERTConfig(units=30, num_heads=4)
    with pytest.raises(ConfigError, match='unknown model'):
        get_config('bert_99')
    assert get_config('bert_12_768_12').num_layers == 12
    assert get_config('bert_24_1024_16').units == 1024
    hf = TINY.to_hf_config()
    path = tmp_path / 'config.json'
    path.write_text(__import__('json').dumps(hf))
    assert BERTConfig.from_hf_config(str(tmp_path)) == TINY
    untied = TINY.replace(tie_word_embeddings=False)
    assert untied.to_hf_config()['tie_word_embeddings'] is False
    assert BERTConfig.from_hf_config(untied.to_hf_config()) == untied
    assert BERTConfig.from_dict(untied.to_dict()) == untied
    with pytest.raises(ConfigError, match='tie_word_embeddings=1'):
        TINY.replace(tie_word_embeddings=1)
    bad = dict(hf, hidden_act='relu')
    with pytest.raises(ConfigError, match="hidden_act='relu'"):
        BERTConfig.from_hf_config(bad)
    path.write_text('{"vocab_size": 10,\n oops}')
    with pytest.raises(ConfigError, match=r'config.json:2: not valid JSON'):
        BERTConfig.from_hf_config(str(path))


def test_same_code_on_several_contexts(tmp_path):
    """Parameters on two contexts (as split_and_load uses them) give the outputs of a model
    loaded on the second context alone, and those outputs depend on the inputs."""
    ids, seg, valid, pos = _batch()
    ctxs = [mx.cpu(0), mx.cpu(1)]
    mx.random.seed(7)
    net = BERTModel(TINY)
    net.initialize(ctx=ctxs)
    net.save_parameters(str(tmp_path / 'net.params'))
    alone = BERTModel(TINY)
    alone.load_parameters(str(tmp_path / 'net.params'), ctx=mx.cpu(1))

    def mlm(model, c, token_ids=ids):
        return model(token_ids.as_in_context(c), seg.as_in_context(c), valid.as_in_context(c),
                     pos.as_in_context(c))[3].asnumpy()

    outs = [mlm(net, c) for c in ctxs] + [mlm(alone, mx.cpu(1))]
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    other = mlm(net, mx.cpu(1), (ids + 1) % TINY.vocab_size)
    assert np.abs(other - outs[1]).max() > 1e-3


def test_mlm_decoder_refuses_mismatched_embedding():
    embedding = mx.gluon.nn.Embedding(50, TINY.units)
    with pytest.raises(InputError, match=r'\(50, 32\)'):
        MLMDecoder(TINY.units, 100, embedding)
