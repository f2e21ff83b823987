"""Fine-tuning and prediction on a tiny synthetic paraphrase task."""
import json
import os

import numpy as np
import pytest

from gluonbert.errors import ConfigError, DataFormatError
from gluonbert.train.config import DeviceConfig, FinetuneConfig, OptimizerConfig
from gluonbert.train.finetune import finetune
from gluonbert.serve.predict import predict


def config(tmp_path, data_dir, source, name='run', **changes):
    values = dict(data_dir=data_dir, from_converted=source, out_dir=str(tmp_path / name),
                  max_seq_length=32, batch_size=16, eval_batch_size=32, epochs=2, dropout=0.1,
                  progress=False, optimizer=OptimizerConfig(lr=1e-3, warmup_ratio=0.1),
                  devices=DeviceConfig(cpus=2))
    values.update(changes)
    return FinetuneConfig(**values)


@pytest.mark.slow
def test_reaches_high_train_accuracy_and_predicts(tmp_path, paraphrase_dir, pretrained_run):
    summary = finetune(config(tmp_path, paraphrase_dir, None, epochs=8, dropout=0.0,
                              pretrained_checkpoint=pretrained_run['out_dir']))
    epochs = summary['epochs']
    assert len(epochs) == 8 and epochs[-1]['train_loss'] < 0.6 * epochs[0]['train_loss']
    assert epochs[-1]['train_accuracy'] > 0.9 and summary['best']['dev_accuracy'] > 0.8
    best = summary['best']
    assert best['dev_accuracy'] == max(e['dev_accuracy'] for e in epochs)
    out = summary['out_dir']
    info = json.load(open(os.path.join(out, 'finetune.json')))
    assert info['best']['epoch'] == best['epoch'] and info['task']['labels'] == ['0', '1']
    # predict reloads the kept (best) epoch and reproduces its dev accuracy
    result = predict(out, os.path.join(paraphrase_dir, 'dev.tsv'),
                     str(tmp_path / 'pred' / 'dev_pred.tsv'), batch_size=7, cpus=2)
    assert result['count'] == 48
    assert result['accuracy'] == pytest.approx(best['dev_accuracy'])
    assert result['f1'] == pytest.approx(best['dev_f1'])
    rows = [line.rstrip('\n').split('\t') for line in open(tmp_path / 'pred' / 'dev_pred.tsv')]
    assert rows[0] == ['index', 'prediction', 'prob_0', 'prob_1', 'label']
    probs = np.array([[float(r[2]), float(r[3])] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [r[1] for r in rows[1:]] == [str(int(p[1] > p[0])) for p in probs]
    assert os.listdir(tmp_path / 'pred') == ['dev_pred.tsv']     # no temporary left behind
    assert 'WARNING' not in open(os.path.join(out, 'train.log')).read()


def test_warns_when_the_classifier_stays_at_the_majority_class(tmp_path, converted_dir):
    """With a rate too small to move anything, a 3:1 task ends at (or below) the majority
    class's train accuracy: the log says so after half of the schedule, not before."""
    from .synthetic import write_paraphrase_tsv
    data = tmp_path / 'skewed'
    data.mkdir()
    for name, count in (('train', 96), ('dev', 32)):
        rows = open(write_paraphrase_tsv(data / f'{name}.tsv', count, seed=4)).read().split('\n')
        rows = [rows[0]] + [('1' + r[1:]) if i % 4 else r
                            for i, r in enumerate(rows[1:]) if r]   # 3 of 4 labelled 1
        (data / f'{name}.tsv').write_text('\n'.join(rows) + '\n')
    summary = finetune(config(tmp_path, str(data), converted_dir, epochs=3,
                              optimizer=OptimizerConfig(name='adamw', lr=1e-9)))
    share = summary['train_majority']
    assert share >= 0.74 and summary['dev_majority'] >= 0.74
    assert all(e['train_accuracy'] <= share + 0.02 for e in summary['epochs'])
    log = open(os.path.join(summary['out_dir'], 'train.log')).read()
    warnings = [line for line in log.splitlines() if 'WARNING' in line]
    assert [w.split('WARNING: ')[1][:16] for w in warnings] == ['epoch 2 of 3: tr',
                                                                  'epoch 3 of 3: tr']
    assert f'({share:.4f})' in warnings[0] and 'predicts one class' in warnings[0]


@pytest.mark.slow
def test_deterministic_for_a_seed(tmp_path, paraphrase_dir, converted_dir):
    a = finetune(config(tmp_path, paraphrase_dir, converted_dir, 'a'))
    b = finetune(config(tmp_path, paraphrase_dir, converted_dir, 'b'))
    c = finetune(config(tmp_path, paraphrase_dir, converted_dir, 'c', seed=3))
    keys = ('dev_accuracy', 'dev_loss', 'train_loss')
    assert [[e[k] for k in keys] for e in a['epochs']] == [[e[k] for k in keys]
                                                           for e in b['epochs']]
    assert [e['train_loss'] for e in a['epochs']] != [e['train_loss'] for e in c['epochs']]
    wa = a['net'].classifier[-1].weight.data().asnumpy()
    np.testing.assert_array_equal(wa, b['net'].classifier[-1].weight.data().asnumpy())


def _graph_ops(net):
    return {node['op'] for node in json.loads(net._cached_graph[1].tojson())['nodes']}


def test_kernels_off_trains_on_mxnet_operators(tmp_path, paraphrase_dir, converted_dir,
                                              monkeypatch):
    """GLUONBERT_KERNELS=0 (or any failed build): the same run on MXNet's operators, end to
    end, learning as on the kernels."""
    from gluonbert import kernels
    monkeypatch.setitem(kernels._state, 'loaded', None)
    monkeypatch.setenv('GLUONBERT_KERNELS', '0')
    summary = finetune(config(tmp_path, paraphrase_dir, converted_dir, epochs=3))
    ops = _graph_ops(summary['net'])
    assert 'FullyConnected' in ops and not [op for op in ops if op.startswith('gluonbert_')]
    epochs = summary['epochs']
    assert epochs[-1]['train_loss'] < epochs[0]['train_loss']
    monkeypatch.setitem(kernels._state, 'loaded', None)
    monkeypatch.delenv('GLUONBERT_KERNELS')
    if kernels.load():             # and with them on, the graph holds them
        on = finetune(config(tmp_path, paraphrase_dir, converted_dir, 'on', epochs=1))
        assert 'gluonbert_self_attention' in _graph_ops(on['net'])


def test_early_stop(tmp_path, paraphrase_dir, converted_dir):
    summary = finetune(config(tmp_path, paraphrase_dir, converted_dir, epochs=6, early_stop=1,
                              optimizer=OptimizerConfig(lr=1e-9)))
    assert len(summary['epochs']) == 2 and summary['best']['epoch'] == 1


def test_starting_from_a_pretraining_run(tmp_path, paraphrase_dir, corpus_txt, corpus_vocab_txt):
    from gluonbert.train.config import PretrainConfig
    from gluonbert.train.pretrain import pretrain
    pretrain(PretrainConfig(data=corpus_txt, vocab=corpus_vocab_txt, out_dir=str(tmp_path / 'pt'),
                            model='bert_tiny_test', max_seq_length=32, max_predictions_per_seq=5,
                            batch_size=16, num_steps=4, checkpoint_interval=2, progress=False))
    import mxnet as mx

    from gluonbert.model.pretrained import load_backbone
    loaded = []
    for i, source in enumerate((tmp_path / 'pt',
                                tmp_path / 'pt' / 'checkpoints' / 'step-00000002')):
        cfg = config(tmp_path, paraphrase_dir, None, f'run{i}', epochs=1,
                     pretrained_checkpoint=str(source))
        # the encoder starts from exactly that file's weights
        saved = {k: v.asnumpy() for k, v in mx.nd.load(str(source / 'model.params')).items()}
        encoder = {k: p.data().asnumpy() for k, p in
                   load_backbone(cfg).bert._collect_params_with_prefix().items()}
        shared = [k for k in encoder if k in saved]
        assert len(shared) > 20 and all(np.array_equal(encoder[k], saved[k]) for k in shared)
        loaded.append(encoder['word_embed.0.weight'])
        summary = finetune(cfg)
        assert summary['source'].endswith('model.params')
        assert summary['train_size'] == 160 and summary['dev_size'] == 48
    assert not np.array_equal(*loaded)          # step 2 is not the final model


def test_custom_glue_task_columns(tmp_path, converted_dir):
    data = tmp_path / 'sst'
    data.mkdir()
    for name, n in (('train.tsv', 40), ('dev.tsv', 10)):
        rows = ['sentence\tlabel'] + [f'w0x{i % 8} w0x{(i + 1) % 8}\t{"pos" if i % 2 else "neg"}'
                                      for i in range(n)]
        (data / name).write_text('\n'.join(rows) + '\n')
    summary = finetune(config(tmp_path, str(data), converted_dir, epochs=1, text_a='sentence',
                              label_column='label', labels='neg,pos'))
    assert summary['dev_size'] == 10
    result = predict(summary['out_dir'], str(data / 'dev.tsv'), str(tmp_path / 'p.tsv'))
    assert result['count'] == 10 and open(tmp_path / 'p.tsv').readline().startswith(
        'index\tprediction\tprob_neg\tprob_pos')


def test_errors_name_the_problem(tmp_path, paraphrase_dir, converted_dir):
    with pytest.raises(ConfigError, match='exactly one starting point'):
        FinetuneConfig(hf_dir='a', from_converted='b')
    with pytest.raises(ConfigError, match='needs a starting point'):
        finetune(config(tmp_path, paraphrase_dir, None))
    with pytest.raises(DataFormatError, match='no MRPC files'):
        finetune(config(tmp_path, str(tmp_path), converted_dir))
    with pytest.raises(ConfigError, match='--label-column'):
        finetune(config(tmp_path, paraphrase_dir, converted_dir, text_a='sentence'))
