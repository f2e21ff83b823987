"""Input checks hold on every path: imperative, hybridized (with and without static memory),
and an exported graph loaded with import_exported (issue 12)."""
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluonbert.errors import InputError
from gluonbert.model import BERTClassifier, BERTModel, get_config, import_exported
from gluonbert.model import inputs as checks

TINY = get_config('bert_tiny_test', dropout=0.0)     # vocab 100, 64 positions, 2 segment ids


def _batch(batch=3, length=12):
    rng = np.random.RandomState(0)
    ids = rng.randint(5, TINY.vocab_size, size=(batch, length))
    segments = np.zeros_like(ids)
    segments[:, length // 2:] = 1
    valid = np.full((batch,), length)
    return ids, segments, valid


def _nd(array, dtype='int32'):
    return mx.nd.array(array, dtype=dtype)


# Each case: a function of (ids, segments, valid) numpy arrays -> the arrays to pass, and the
# message expected.
CASES = {
    'id_too_large': (lambda i, s, v: (_nd(i + 150), _nd(s), _nd(v)),
                     r'token_ids contains [12]\d\d; expected ids in \[0, 100\) \(vocab_size=100\)'),
    'negative_id': (lambda i, s, v: (_nd(np.where(i == i[0, 3], -1, i)), _nd(s), _nd(v)),
                    r'token_ids contains -1; expected ids in \[0, 100\)'),
    'float_id': (lambda i, s, v: (_nd(np.where(i == i[0, 3], 3.7, i), 'float32'), _nd(s), _nd(v)),
                 r'token_ids contains 3.7\d* \(dtype float32\); expected integer values'),
    'valid_length_0': (lambda i, s, v: (_nd(i), _nd(s), _nd(v * 0)),
                       r'valid_length contains 0; expected values in \[1, 12\]'),
    'valid_length_too_long': (lambda i, s, v: (_nd(i), _nd(s), _nd(v + 1)),
                              r'valid_length contains 13; expected values in \[1, 12\]'),
    'longer_than_positions': (lambda i, s, v: (_nd(np.tile(i, 6)), _nd(np.tile(s, 6)), _nd(v)),
                              r'sequence length 72 exceeds the position table of 64 rows'),
    'segment_id_2': (lambda i, s, v: (_nd(i), _nd(s * 2), _nd(v)),
                     r'segment_ids contains 2; expected ids in \[0, 2\) '
                     r'\(token_type_vocab_size=2'),
    'empty_batch': (lambda i, s, v: (_nd(i[:0]), _nd(s[:0]), _nd(v[:0])),
                    r'token_ids has shape \(0, 12\): an empty batch'),
}


def _classifier():
    mx.random.seed(3)
    bert = BERTModel(TINY, use_decoder=False, use_classifier=False)
    net = BERTClassifier(bert, num_classes=2)
    net.initialize()
    return net


def _model():
    mx.random.seed(3)
    net = BERTModel(TINY, use_decoder=False)
    net.initialize()
    return net


def _prepared(make, mode, tmp_path):
    """The block as a user of ``mode`` has it, after one good batch (the graph is cached)."""
    net = make()
    good = [_nd(a) for a in _batch()]
    if mode == 'hybridize':
        net.hybridize()
    elif mode == 'hybridize_static':
        net.hybridize(static_alloc=True, static_shape=True)
    elif mode == 'exported':
        net.hybridize(static_alloc=True, static_shape=True)
        net(*good)
        net.export(str(tmp_path / 'model'))
        net = import_exported(str(tmp_path / 'model'))
    net(*good)
    return net


MODES = ['imperative', 'hybridize', 'hybridize_static', 'exported']


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('make', [_classifier, _model], ids=['classifier', 'bertmodel'])
def test_bad_input_raises_on_every_path(make, case, mode, tmp_path):
    net = _prepared(make, mode, tmp_path)
    transform, pattern = CASES[case]
    with pytest.raises(InputError, match=pattern):
        net(*transform(*_batch()))
    # still usable afterwards, same result as before
    out = net(*[_nd(a) for a in _batch()])
    assert np.isfinite((out[0] if isinstance(out, (tuple, list)) else out).asnumpy()).all()


@pytest.mark.parametrize('mode', MODES)
def test_float_ids_with_integer_values_are_accepted(mode, tmp_path):
    """GluonNLP scripts often pass float32 ids (mx.nd.array's default): whole values are fine."""
    net = _prepared(_classifier, mode, tmp_path)
    ids, segments, valid = _batch()
    as_int = net(_nd(ids), _nd(segments), _nd(valid)).asnumpy()
    as_float = net(_nd(ids, 'float32'), _nd(segments, 'float32'),
                   _nd(valid, 'float32')).asnumpy()
    np.testing.assert_allclose(as_int, as_float, rtol=1e-6)


def test_masked_positions_checked_when_hybridized():
    mx.random.seed(3)
    net = BERTModel(TINY)
    net.initialize()
    net.hybridize(static_alloc=True)
    ids, segments, valid = (_nd(a) for a in _batch())
    net(ids, segments, valid, _nd(np.zeros((3, 2))))
    with pytest.raises(InputError, match=r'masked_positions contains 12; expected positions '
                                         r'in \[0, 12\)'):
        net(ids, segments, valid, _nd(np.full((3, 2), 12)))


def test_checked_once_per_call(monkeypatch):
    """Nested blocks (classifier -> model -> encoder) do not repeat the outer block's check."""
    calls = []
    original = checks.check_inputs

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    for module in ('gluonbert.model.bert', 'gluonbert.model.encoder'):
        monkeypatch.setattr(f'{module}.check_inputs', counting)
    net = _classifier()
    net(*[_nd(a) for a in _batch()])
    assert len(calls) == 1
    net.bert.encoder(*[_nd(a) for a in _batch()])      # a block called on its own checks
    assert len(calls) == 2


def test_empty_batch_with_numpy_shape_semantics_raises_instead_of_sigfpe():
    """With mx.util.set_np_shape(True) an empty batch used to kill the process (SIGFPE)."""
    code = '''
import mxnet as mx
from gluonbert.errors import InputError
from gluonbert.model import BERTModel, get_config
net = BERTModel(get_config('bert_tiny_test'), use_decoder=False)
net.initialize()
net.hybridize(static_alloc=True)
net(mx.nd.ones((2, 4)), mx.nd.zeros((2, 4)), mx.nd.array([4, 3]))
mx.util.set_np_shape(True)
try:
    net(mx.nd.ones((0, 4)), mx.nd.zeros((0, 4)), mx.nd.ones((0,)))
except InputError as err:
    print('InputError:', err)
'''
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'InputError: token_ids has shape (0, 4): an empty batch' in proc.stdout


def test_import_exported_refuses_missing_description(tmp_path):
    from gluonbert.errors import WeightsNotFoundError
    net = _prepared(_classifier, 'hybridize_static', tmp_path)
    net.export(str(tmp_path / 'm'))
    (tmp_path / 'm-gluonbert.json').unlink()
    with pytest.raises(WeightsNotFoundError, match=r'm-gluonbert.json: not found'):
        import_exported(str(tmp_path / 'm'))


def test_exported_model_needs_every_input(tmp_path):
    net = _prepared(_classifier, 'exported', tmp_path)
    ids, segments, _ = (_nd(a) for a in _batch())
    with pytest.raises(InputError, match=r'this exported model takes 3 inputs \(token_ids, '
                                         r'segment_ids, valid_length\); got 2'):
        net(ids, segments)


def test_overhead_benchmark_runs(tmp_path):
    """benchmarks/input_checks.py --quick: the table and the JSON with the machine's CPU."""
    import json
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / 'checks.json'
    proc = subprocess.run([sys.executable, os.path.join(root, 'benchmarks', 'input_checks.py'),
                           '--quick', '--out', str(out)], capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'checked med/min ms' in proc.stdout
    result = json.loads(out.read_text())
    cpu = result['meta']['cpu']
    assert cpu['model'] and isinstance(cpu['isa'], dict) and cpu['amx'].startswith('AMX ')
    (row,) = result['rows']
    assert row['model'] == 'bert_tiny_test'
    # the two timed paths compute the same thing, and the checked one does check
    assert row['same_outputs'] and row['checked_refuses_bad_id']
    assert set(row['sync']) >= {'checked', 'unchecked', 'overhead_median_pct'}
