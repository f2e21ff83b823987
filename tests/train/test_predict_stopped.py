"""``gluonbert predict`` on a fine-tuning run stopped with ``--stop-at-step`` before its first
epoch ended (no ``model.params`` yet: its newest checkpoint), and on unlabelled TSVs whose
columns the user names (``--text-a``/``--text-b``, header names or indices)."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluonbert.train.config import DeviceConfig, FinetuneConfig, OptimizerConfig
from gluonbert.train.finetune import finetune

#: Whole predict commands on trained runs: CI runs them; the fast tier skips them.
pytestmark = pytest.mark.slow


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'gluonbert.cli', *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope='module')
def stopped_run(tmp_path_factory):
    """bert_tiny_test fine-tuned for 3 updates of a 10-update epoch, then stopped."""
    from .synthetic import write_converted, write_paraphrase_tsv
    tmp = tmp_path_factory.mktemp('stopped')
    data = tmp / 'data'
    data.mkdir()
    write_paraphrase_tsv(data / 'train.tsv', 160, seed=1)
    write_paraphrase_tsv(data / 'dev.tsv', 16, seed=2)
    summary = finetune(FinetuneConfig(
        data_dir=str(data), from_converted=write_converted(tmp / 'converted'),
        out_dir=str(tmp / 'run'), max_seq_length=32, batch_size=16, epochs=2, dropout=0.1,
        stop_at_step=3, checkpoint_interval=3, progress=False,
        optimizer=OptimizerConfig(lr=1e-3), devices=DeviceConfig(cpus=1)))
    assert not summary['finished']
    return {'run': summary['out_dir'], 'dev': str(data / 'dev.tsv'), 'tmp': tmp}


def _unlabelled(path, rows, header, order=(3, 4)):
    """The dev rows' two texts under a header of our choosing (or none)."""
    lines = [] if header is None else ['\t'.join(header)]
    lines += ['\t'.join([str(i), row[order[0]], row[order[1]]]) for i, row in enumerate(rows)]
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return str(path)


def _probs(path):
    rows = [line.split('\t') for line in open(path, encoding='utf-8').read().splitlines()]
    return rows[0], np.array([[float(r[2]), float(r[3])] for r in rows[1:]])


def test_stopped_run_is_predicted_from_its_checkpoint(stopped_run):
    run, tmp = stopped_run['run'], stopped_run['tmp']
    step = os.path.join(run, 'checkpoints', 'step-00000003')
    assert not os.path.exists(os.path.join(run, 'model.params')) and os.path.isdir(step)
    info = json.load(open(os.path.join(run, 'finetune.json')))
    assert info['best'] is None and info['task']['labels'] == ['0', '1']   # written at start
    done = cli('predict', '--model-dir', run, '--input', stopped_run['dev'], '--output',
               str(tmp / 'dev_pred.tsv'), '--cpus', '1')
    assert done.returncode == 0, done.stderr[-3000:]
    header, probs = _probs(tmp / 'dev_pred.tsv')
    assert header == ['index', 'prediction', 'prob_0', 'prob_1', 'label'] and len(probs) == 16
    # the same numbers as the checkpoint's parameters in a classifier built by hand
    from gluonbert.data import BERTDatasetTransform, get_tokenizer, load_vocab, read_mrpc_tsv
    from gluonbert.model import BERTClassifier, BERTConfig, BERTModel
    bert = BERTModel(BERTConfig.from_dict(info['bert']), use_decoder=False,
                     use_classifier=False)
    net = BERTClassifier(bert, num_classes=2, dropout=0.1)
    net.load_parameters(os.path.join(step, 'model.params'))
    transform = BERTDatasetTransform(get_tokenizer(load_vocab(os.path.join(run, 'vocab.txt'))),
                                     32, class_labels=['0', '1'], pad=False, has_label=False)
    for row, record in enumerate(read_mrpc_tsv(stopped_run['dev'])):
        ids, segments, valid = (mx.nd.array([a]) for a in transform(record.text_a,
                                                                     record.text_b))
        expected = mx.nd.softmax(net(ids, segments, valid.reshape(-1))).asnumpy()[0]
        np.testing.assert_allclose(probs[row], expected, atol=2e-6)
    # the checkpoint directory itself gives the same file
    again = cli('predict', '--model-dir', step, '--input', stopped_run['dev'], '--output',
                str(tmp / 'step_pred.tsv'), '--cpus', '1')
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp / 'step_pred.tsv').read_text() == (tmp / 'dev_pred.tsv').read_text()


def test_unlabelled_input_with_columns_of_our_choosing(stopped_run):
    from gluonbert.data import read_mrpc_tsv
    tmp = stopped_run['tmp']
    rows = [['', '', '', r.text_a, r.text_b] for r in read_mrpc_tsv(stopped_run['dev'])]
    named = _unlabelled(tmp / 'named.tsv', rows, ['id', 'sentence1', 'sentence2'])
    bare = _unlabelled(tmp / 'bare.tsv', rows, None)
    done = cli('predict', '--model-dir', stopped_run['run'], '--input', named, '--output',
               str(tmp / 'named_pred.tsv'), '--text-a', 'sentence1', '--text-b', 'sentence2',
               '--cpus', '1')
    assert done.returncode == 0, done.stderr[-3000:]
    header, probs = _probs(tmp / 'named_pred.tsv')
    assert header == ['index', 'prediction', 'prob_0', 'prob_1'] and len(probs) == 16
    assert '16 predictions' in done.stdout and 'accuracy' not in done.stdout
    from gluonbert.serve.predict import predict      # the task's own format, labelled
    predict(stopped_run['run'], stopped_run['dev'], str(tmp / 'reference.tsv'), cpus=1)
    np.testing.assert_allclose(probs, _probs(tmp / 'reference.tsv')[1], atol=1e-6)
    done = cli('predict', '--model-dir', stopped_run['run'], '--input', bare, '--output',
               str(tmp / 'bare_pred.tsv'), '--text-a', '1', '--text-b', '2', '--no-header',
               '--cpus', '1')
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp / 'bare_pred.tsv').read_text() == (tmp / 'named_pred.tsv').read_text()


@pytest.mark.slow
@pytest.mark.parametrize('args,message', [
    (['--text-a', 'sentence1'], '--text-a sentence1 alone: the model classifies sentence pairs'),
    (['--text-b', 'sentence2'], '--text-b given without --text-a'),
    (['--text-a', 'sentence1', '--text-b', 'nope'], "text_b column 'nope' not in header"),
    (['--no-header'], '--no-header needs --text-a'),
])
def test_column_mistakes_are_named(stopped_run, args, message):
    tmp = stopped_run['tmp']
    named = _unlabelled(tmp / 'mistake.tsv', [['', '', '', 'a', 'b']],
                        ['id', 'sentence1', 'sentence2'])
    done = cli('predict', '--model-dir', stopped_run['run'], '--input', named, '--output',
               str(tmp / 'mistake_pred.tsv'), '--cpus', '1', *args)
    assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr[-3000:]
    assert message in done.stderr
    assert not (tmp / 'mistake_pred.tsv').exists()
