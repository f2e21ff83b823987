"""``gluonbert predict --max-batch-tokens``: batches under a padded-token budget, cut from
length-sorted inputs, with the predictions written in input order and equal to those of the
default batching (same labels, probabilities to 2e-6); for a fine-tuned directory and for its fp32 and INT8 exports."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gluonbert.errors import ConfigError
from gluonbert.serve.predict import batches_by_length

from .synthetic import WORDS
from .test_predict_errors import assert_named_error, write_model_dir

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'gluonbert.cli', *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def write_shuffled_pairs(path, num_pairs, seed):
    """MRPC-format pairs of 1 to 14 words each, in random order of length; the label column
    holds the pair's own row number, so an output row can be matched to its input row."""
    rng = np.random.default_rng(seed)
    rows = ['Quality\t#1 ID\t#2 ID\t#1 String\t#2 String']
    for i in range(num_pairs):
        a, b = (' '.join(rng.choice(WORDS, size=int(rng.integers(1, 15)))) for _ in range(2))
        rows.append(f'{i % 2}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}')
    path.write_text('\n'.join(rows) + '\n', encoding='utf-8')
    return str(path)


def read_rows(path):
    lines = open(path, encoding='utf-8').read().splitlines()
    return lines[0], [line.split('\t') for line in lines[1:]]


@pytest.mark.parametrize('batch_size,budget', [(None, 40), (None, 100), (3, 100), (None, 29)])
def test_batches_hold_at_most_the_budget_and_cover_every_sample_once(batch_size, budget):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 30, size=57)
    samples = [(np.zeros(n, dtype=np.int32), None, n) for n in lengths]
    batches = batches_by_length(samples, batch_size, budget)
    covered = np.concatenate(batches)
    assert sorted(covered.tolist()) == list(range(57))
    assert np.all(np.diff(lengths[covered]) >= 0)           # cut from the length-sorted order
    for batch in batches:
        assert len(batch) * lengths[batch].max() <= budget
        assert batch_size is None or len(batch) <= batch_size
    # greedy: adding the next sample to any batch would break a limit
    for batch, following in zip(batches, batches[1:]):
        rows = len(batch) + 1
        assert rows * lengths[following[0]] > budget or (batch_size and rows > batch_size)
    # short samples share larger batches than long ones
    assert len(batches[0]) >= len(batches[-1])


def test_budget_errors_name_the_sample_and_the_limit():
    samples = [(np.zeros(n, dtype=np.int32), None, n) for n in (4, 9, 6)]
    with pytest.raises(ConfigError, match=r'sample 1: 9 tokens, more than max_batch_tokens=8'):
        batches_by_length(samples, None, 8)
    with pytest.raises(ConfigError, match=r'max_batch_tokens=0: expected >= 1'):
        batches_by_length(samples, None, 0)
    with pytest.raises(ConfigError, match='both None'):
        batches_by_length(samples, None, None)
    assert [b.tolist() for b in batches_by_length(samples, None, 9)] == [[0], [2], [1]]


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """A tiny model directory, its fp32 and INT8 exports, and a shuffled-length input."""
    from gluonbert.serve import deploy
    tmp = tmp_path_factory.mktemp('batching')
    import mxnet as mx
    model = write_model_dir(tmp / 'model', max_seq_length=32)
    # with the default initialisation the probabilities differ by 1e-5 between inputs; with
    # weights of standard deviation 0.3 they differ by tenths, so that a row written for
    # another input shows
    params = mx.nd.load(os.path.join(model, 'model.params'))
    rng = np.random.default_rng(0)
    for name, value in params.items():
        if name.endswith('.weight'):
            params[name] = mx.nd.array(rng.normal(0, 0.3, size=value.shape))
    mx.nd.save(os.path.join(model, 'model.params'), params)
    data = write_shuffled_pairs(tmp / 'dev.tsv', 40, seed=5)
    deploy.export(model, str(tmp / 'fp32'))
    deploy.quantize(model, data, str(tmp / 'int8'), num_calib_batches=1, batch_size=16)
    return {'tmp': tmp, 'data': data,
            'dirs': {'tuned': model, 'fp32': str(tmp / 'fp32'), 'int8': str(tmp / 'int8')}}


@pytest.mark.parametrize('kind', ['tuned', 'fp32', 'int8'])
def test_token_budget_gives_the_default_predictions_in_input_order(served, kind):
    directory, tmp = served['dirs'][kind], served['tmp']
    outputs = {}
    for name, flags in (('default', []), ('single', ['--batch-size', '1']),
                        ('budget', ['--max-batch-tokens', '96']),
                        ('budget_rows', ['--max-batch-tokens', '200', '--batch-size', '5'])):
        path = tmp / f'{kind}-{name}.tsv'
        done = cli('predict', '--model-dir', directory, '--input', served['data'], '--output',
                   str(path), '--cpus', '1', *flags)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[name] = read_rows(path)
    header, rows = outputs['budget']
    assert header == 'index\tprediction\tprob_0\tprob_1\tlabel'
    assert [r[0] for r in rows] == [str(i) for i in range(40)]
    assert [r[-1] for r in rows] == [str(i % 2) for i in range(40)]    # the input's labels
    # each row scored alone (batch 1) is the reference for which input a row belongs to
    for name in ('default', 'budget', 'budget_rows'):
        probs = np.array([[float(x) for x in r[2:4]] for r in outputs[name][1]])
        alone = np.array([[float(x) for x in r[2:4]] for r in outputs['single'][1]])
        np.testing.assert_allclose(probs, alone, atol=2e-6, err_msg=name)
        assert [r[1] for r in outputs[name][1]] == [r[1] for r in outputs['single'][1]]
    # (not byte-identical: a product's rounding depends on the batch's shape, in the last
    # printed digit at most)
    spread = np.array([[float(x) for x in r[2:4]] for r in rows])
    assert np.ptp(spread[:, 1]) > 0.3          # the inputs differ, so the test can fail


def test_budget_below_an_input_length_is_a_named_error(served, tmp_path):
    out = tmp_path / 'out.tsv'
    # the longest pair of the file has up to 2 x 14 words + 3 specials tokens; 8 fits none
    done = cli('predict', '--model-dir', served['dirs']['int8'], '--input', served['data'],
               '--output', str(out), '--max-batch-tokens', '8')
    assert_named_error(done, f'{served["data"]}:', 'more than max_batch_tokens=8',
                       'at least the longest input')
    assert not out.exists()
    done = cli('predict', '--model-dir', served['dirs']['tuned'], '--input', served['data'],
               '--output', str(out), '--max-batch-tokens', '0')
    assert_named_error(done, 'max_batch_tokens=0: expected >= 1')
