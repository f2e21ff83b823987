"""gluonbert.serve.deploy: INT8 calibration and fp32 export of a tiny fine-tuned classifier, served by
``gluonbert predict`` and by plain MXNet, and the errors of ``gluonbert quantize``."""
import json
import logging
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluonbert.serve import deploy
from gluonbert.errors import ConfigError, DataFormatError, WeightsNotFoundError
from gluonbert.serve.predict import predict

from .synthetic import NUM_TOPICS, TOPIC_WORDS, VOCAB, WORDS, write_converted

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_topic_tsv(path, num_pairs, seed):
    """MRPC-format pairs labelled 1 when the first sentence's topic is in the first half: a
    task a randomly initialised tiny BERT learns in a few epochs (confident predictions, so
    that int8 and fp32 agreeing means something)."""
    rng = np.random.default_rng(seed)
    rows = ['Quality\t#1 ID\t#2 ID\t#1 String\t#2 String']

    def sentence(topic):
        return ' '.join(WORDS[topic * TOPIC_WORDS + int(rng.integers(TOPIC_WORDS))]
                        for _ in range(int(rng.integers(3, 9))))
    for i in range(num_pairs):
        a, b = int(rng.integers(NUM_TOPICS)), int(rng.integers(NUM_TOPICS))
        rows.append(f'{int(a < NUM_TOPICS // 2)}\t{2 * i}\t{2 * i + 1}\t{sentence(a)}\t'
                    f'{sentence(b)}')
    path.write_text('\n'.join(rows) + '\n', encoding='utf-8')
    return str(path)


@pytest.fixture(scope='module')
def finetuned(tmp_path_factory):
    """A tiny BERT fine-tuned on :func:`write_topic_tsv` data (dev accuracy checked)."""
    from gluonbert.train.config import DeviceConfig, FinetuneConfig, OptimizerConfig
    from gluonbert.train.finetune import finetune
    tmp = tmp_path_factory.mktemp('deploy')
    data = tmp / 'data'
    data.mkdir()
    write_topic_tsv(data / 'train.tsv', 160, seed=1)
    write_topic_tsv(data / 'dev.tsv', 64, seed=2)
    converted = write_converted(tmp / 'converted')
    summary = finetune(FinetuneConfig(
        data_dir=str(data), from_converted=str(converted), out_dir=str(tmp / 'run'),
        max_seq_length=32, batch_size=16, eval_batch_size=32, epochs=8, dropout=0.0,
        progress=False, optimizer=OptimizerConfig(lr=1e-3, warmup_ratio=0.1),
        devices=DeviceConfig(cpus=1)))
    assert summary['best']['dev_accuracy'] >= 0.9      # else agreement would be luck
    return {'model_dir': summary['out_dir'], 'data': str(data), 'converted': str(converted),
            'tmp': tmp, 'dev': str(data / 'dev.tsv'), 'train': str(data / 'train.tsv')}


def read_predictions(path):
    rows = [line.rstrip('\n').split('\t') for line in open(path, encoding='utf-8')]
    return rows[0], [r[1] for r in rows[1:]], np.array([[float(x) for x in r[2:4]]
                                                        for r in rows[1:]])


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, '-m', 'gluonbert.cli', *args], capture_output=True,
                          text=True, cwd=ROOT, **kwargs)


VNNI = deploy.int8_isa()['vnni']


def weight_params(directory):
    """The int8 weight matrices stored in a deployment directory (tensor-wise weights)."""
    params = mx.nd.load(os.path.join(directory, 'model-0000.params'))
    return {k: v.asnumpy() for k, v in params.items() if k.endswith('_weight_quantize')}


@pytest.mark.parametrize('mode,channel_wise', [(m, None) for m in deploy.CALIB_MODES] +
                         [('naive', False)])
def test_int8_predictions_agree_with_fp32(tmp_path, finetuned, mode, channel_wise):
    """With the weights this CPU needs: 8-bit (channel-wise unless asked otherwise) with VNNI,
    7-bit without ('mixed' scales unless asked otherwise; docs/deploy.md, "INT8 on CPUs
    without VNNI")."""
    out = tmp_path / f'int8-{mode}'
    result = deploy.quantize(finetuned['model_dir'], finetuned['train'], str(out),
                             calib_mode=mode, num_calib_batches=3, batch_size=32,
                             channel_wise=channel_wise)
    assert result['calib_samples'] == 96 and result['precision'] == 'int8'
    bits = 8 if VNNI else 7
    granularity = 'tensor-wise' if channel_wise is False else \
        'channel-wise' if VNNI else 'mixed'
    assert result['weight_bits'] == bits and result['granularity'] == granularity
    fp32 = predict(finetuned['model_dir'], finetuned['dev'], str(tmp_path / 'fp32.tsv'),
                   batch_size=16)
    int8 = predict(str(out), finetuned['dev'], str(tmp_path / 'int8.tsv'), batch_size=16)
    header, labels32, probs32 = read_predictions(tmp_path / 'fp32.tsv')
    header8, labels8, probs8 = read_predictions(tmp_path / 'int8.tsv')
    assert header8 == header == ['index', 'prediction', 'prob_0', 'prob_1', 'label']
    # dev is balanced and fp32 gets >= 90% of it: broken int8 outputs (constant, or random)
    # agree on about half of it at most
    agreement = np.mean(np.array(labels32) == np.array(labels8))
    assert agreement >= 0.9 and abs(int8['accuracy'] - fp32['accuracy']) <= 0.05
    assert np.abs(probs8 - probs32).mean() < 0.02
    assert not np.array_equal(probs8, probs32)          # the int8 graph ran, not the fp32 one
    info = json.load(open(out / 'deploy.json'))
    nodes = json.load(open(out / 'model-symbol.json'))['nodes']
    assert info['precision'] == 'int8' and info['quantization']['calib_mode'] == mode
    assert info['quantization']['granularity'] == granularity
    assert info['quantization']['weight_bits'] == bits
    assert ('no VNNI' in info['quantization']['weight_bits_reason']) == (not VNNI)
    weights = weight_params(out)
    if bits == 7:       # every matrix stored in [-63, 63], using that range
        assert len(weights) == 10 and all(np.abs(w).max() == 63 for w in weights.values())
        # 'mixed': the 6 layers of fp32 output (projection and second feed-forward layer of
        # both layers, pooler, classifier) use it in every row, rescaled after the product
        rescaled = 6 if granularity == 'mixed' else 0
        assert sum(np.all(np.abs(w).max(1) == 63) for w in weights.values()) == rescaled
        assert len([n for n in nodes if n['op'] == 'broadcast_mul']) == rescaled
        assert info['graph_rewrites'] == [
            'constants folded', f'7-bit weights (10 matrices, {rescaled} of them with one '
            'scale per output channel, restored after the product) and query/key/value '
            '(2 attentions)']
    elif granularity == 'tensor-wise':
        assert max(np.abs(w).max() for w in weights.values()) == 127
    assert [x['name'] for x in info['inputs']] == ['data0', 'data1', 'data2']
    assert info['outputs'][0]['labels'] == ['0', '1']
    # the matrix products run in int8: every FullyConnected and attention product quantized
    fused = [n for n in nodes if n['op'].startswith('_sg_mkldnn_')]
    assert {n['op'] for n in fused} == {'_sg_mkldnn_fully_connected', '_sg_mkldnn_selfatt_qk',
                                        '_sg_mkldnn_selfatt_valatt'}
    assert all(n['attrs'].get('quantized') == 'True' for n in fused)
    assert not any(n['op'] == 'FullyConnected' for n in nodes)
    assert sorted(os.listdir(out)) == ['deploy.json', 'finetune.json', 'model-0000.params',
                                       'model-gluonbert.json', 'model-symbol.json', 'vocab.txt']


def test_cli_quantize_export_and_predict(tmp_path, finetuned):
    out8, out32 = tmp_path / 'int8', tmp_path / 'fp32'
    done = run_cli('quantize', '--model-dir', finetuned['model_dir'], '--calib-data',
                   finetuned['train'], '--out-dir', str(out8), '--calib-mode', 'clip',
                   '--num-calib-batches', '2')
    assert done.returncode == 0, done.stderr
    weights = '8-bit weights, channel-wise' if VNNI else '7-bit weights, mixed'
    assert f'int8 model ({weights} scales, clip calibration on 64 samples' in done.stdout
    done = run_cli('quantize', '--model-dir', finetuned['model_dir'], '--out-dir', str(out32),
                   '--precision', 'float32')
    assert done.returncode == 0, done.stderr
    assert json.load(open(out32 / 'deploy.json'))['precision'] == 'float32'
    outputs = {}
    for name, directory in (('tuned', finetuned['model_dir']), ('fp32', out32),
                            ('int8', out8)):
        path = tmp_path / f'{name}.tsv'
        done = run_cli('predict', '--model-dir', str(directory), '--input', finetuned['dev'],
                       '--output', str(path), '--batch-size', '16')
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith('64 predictions')
        outputs[name] = read_predictions(path)
    assert outputs['fp32'][0] == outputs['int8'][0] == outputs['tuned'][0]
    np.testing.assert_allclose(outputs['fp32'][2], outputs['tuned'][2], atol=2e-6)
    assert np.mean(np.array(outputs['int8'][1]) == np.array(outputs['tuned'][1])) >= 0.9
    # quantizing again into an existing deployment directory replaces it
    done = run_cli('quantize', '--model-dir', finetuned['model_dir'], '--calib-data',
                   finetuned['train'], '--out-dir', str(out32), '--num-calib-batches', '1')
    assert done.returncode == 0, done.stderr
    assert json.load(open(out32 / 'deploy.json'))['precision'] == 'int8'


PLAIN_MXNET = '''
import sys
import mxnet as mx
import numpy as np
directory, arrays = sys.argv[1], np.load(sys.argv[2])
net = mx.gluon.SymbolBlock.imports(directory + '/model-symbol.json', ['data0', 'data1', 'data2'],
                                   directory + '/model-0000.params')
out = net(*[mx.nd.array(arrays[k], dtype='int32') for k in ('ids', 'types', 'lengths')])
np.save(sys.argv[3], out.asnumpy())
assert not any(m.startswith('gluonbert') for m in sys.modules), 'gluonbert was imported'
'''


def test_exports_load_with_plain_mxnet_in_a_fresh_process(tmp_path, finetuned):
    from gluonbert.data import ClassificationBatchify
    from gluonbert.serve.predict import load_classifier
    from gluonbert.data.tasks import read_examples
    deploy.export(finetuned['model_dir'], str(tmp_path / 'fp32'))
    deploy.quantize(finetuned['model_dir'], finetuned['train'], str(tmp_path / 'int8'),
                    num_calib_batches=2)
    net, transform, spec = load_classifier(finetuned['model_dir'], [mx.cpu()])
    samples = [transform((r.text_a, r.text_b)) for r in read_examples(finetuned['dev'], spec)]
    ids, types, lengths = ClassificationBatchify(pad_id=transform.pad_id, as_numpy=True)(
        [s[:3] for s in samples[:20]])[:3]
    np.savez(tmp_path / 'inputs.npz', ids=ids, types=types, lengths=lengths)
    expected = net(mx.nd.array(ids, dtype='int32'), mx.nd.array(types, dtype='int32'),
                   mx.nd.array(lengths, dtype='int32')).asnumpy()
    for name in ('fp32', 'int8'):       # constants folded: the qkv weight is one parameter
        nodes = json.load(open(tmp_path / name / 'model-symbol.json'))['nodes']
        assert not any(n['op'] == 'Concat' for n in nodes)
        fc = [n for n in nodes if 'fullyconnected' in n['op'].lower().replace('_', '')][0]
        assert nodes[fc['inputs'][1][0]]['op'] == 'null'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    for name in ('fp32', 'int8'):
        done = subprocess.run([sys.executable, '-c', PLAIN_MXNET, str(tmp_path / name),
                               str(tmp_path / 'inputs.npz'), str(tmp_path / f'{name}.npy')],
                              capture_output=True, text=True, cwd=str(tmp_path), env=env)
        assert done.returncode == 0, done.stderr
        got = np.load(tmp_path / f'{name}.npy')
        assert got.shape == (20, 2)
        if name == 'fp32':
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        else:
            assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.9
            assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max()


def test_int8_input_checks_and_cpu_only_serving(tmp_path, finetuned):
    from gluonbert.errors import InputError
    out = str(tmp_path / 'int8')
    deploy.quantize(finetuned['model_dir'], finetuned['train'], out, num_calib_batches=1)
    net = deploy.load_exported(out)
    ids = mx.nd.array([[2, len(VOCAB) + 500, 3]], dtype='int32')     # id beyond the vocab
    with pytest.raises(InputError):
        net(ids, mx.nd.zeros((1, 3), dtype='int32'), mx.nd.array([3], dtype='int32'))
    with pytest.raises(ConfigError, match='INT8 model'):
        deploy.load_exported(out, [mx.gpu(0)])


def test_gpu_context_is_refused(tmp_path, finetuned):
    with pytest.raises(ConfigError, match='CPU only'):
        deploy.quantize(finetuned['model_dir'], finetuned['train'], str(tmp_path / 'x'),
                        ctx=mx.gpu(0))
    done = run_cli('quantize', '--model-dir', finetuned['model_dir'], '--calib-data',
                   finetuned['train'], '--out-dir', str(tmp_path / 'x'), '--gpus', '0')
    assert done.returncode == 2 and 'context gpu(0)' in done.stderr
    assert 'Traceback' not in done.stderr and not (tmp_path / 'x').exists()


def test_a_directory_that_is_not_fine_tuned_is_refused(tmp_path, finetuned):
    with pytest.raises(WeightsNotFoundError, match='finetune.json'):
        deploy.quantize(finetuned['converted'], finetuned['train'], str(tmp_path / 'x'))
    deploy.export(finetuned['model_dir'], str(tmp_path / 'fp32'))
    with pytest.raises(ConfigError, match='holds an exported model'):
        deploy.quantize(str(tmp_path / 'fp32'), finetuned['train'], str(tmp_path / 'x'))
    done = run_cli('quantize', '--model-dir', finetuned['converted'], '--calib-data',
                   finetuned['train'], '--out-dir', str(tmp_path / 'x'))
    assert done.returncode == 2 and 'expected a directory written by gluonbert finetune' \
        in done.stderr and 'Traceback' not in done.stderr
    # nor is an existing directory of something else replaced
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'notes.txt').write_text('keep me')
    with pytest.raises(ConfigError, match='not a deployment directory'):
        deploy.quantize(finetuned['model_dir'], finetuned['train'], str(other))
    assert (other / 'notes.txt').read_text() == 'keep me'


def test_calibration_file_of_another_task_is_refused(tmp_path, finetuned):
    single = tmp_path / 'sst.tsv'                           # a single-sentence task's file
    single.write_text('sentence\tlabel\nw0x1 w0x2\t1\n', encoding='utf-8')
    lines = open(finetuned['train'], encoding='utf-8').read().splitlines()
    labels = tmp_path / 'labels.tsv'                        # MRPC columns, another label set
    labels.write_text('\n'.join([lines[0], '2' + lines[1][1:]] + lines[2:]) + '\n',
                      encoding='utf-8')
    for path, where in ((single, 'sst.tsv:1'), (labels, 'labels.tsv:2')):
        with pytest.raises(DataFormatError, match=where):
            deploy.quantize(finetuned['model_dir'], str(path), str(tmp_path / 'x'))
    done = run_cli('quantize', '--model-dir', finetuned['model_dir'], '--calib-data',
                   str(labels), '--out-dir', str(tmp_path / 'x'))
    assert done.returncode == 2 and "labels.tsv:2: label '2'" in done.stderr
    assert not (tmp_path / 'x').exists()


def test_without_vnni_it_works_and_says_int8_is_slow(tmp_path, finetuned, monkeypatch,
                                                     caplog):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2 avx avx2 fma\n'
                       '\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n')
    assert deploy.int8_isa(str(cpuinfo)) == {'cpu': 'Old CPU', 'flags': ['avx2'],
                                             'vnni': False}
    monkeypatch.setattr(deploy, 'CPUINFO', str(cpuinfo))
    with caplog.at_level(logging.WARNING, logger='gluonbert.serve.deploy'):
        result = deploy.quantize(finetuned['model_dir'], finetuned['train'],
                                 str(tmp_path / 'int8'), num_calib_batches=1)
    assert 'INT8 will be slow here' in result['warning'] and 'Old CPU' in result['warning']
    assert 'INT8 will be slow here' in caplog.text and 'saturate' not in caplog.text
    assert os.path.isfile(tmp_path / 'int8' / 'model-symbol.json')
    info = json.load(open(tmp_path / 'int8' / 'deploy.json'))
    assert info['quantized_on']['vnni'] is False
    # without VNNI: 7-bit weights, whatever this machine has
    assert (info['quantization']['weight_bits'], info['quantization']['granularity']) == (
        7, 'mixed') and result['weight_bits'] == 7
    assert all(np.abs(w).max() <= 63 for w in weight_params(tmp_path / 'int8').values())
    # the command says it too (the same code path, with the replaced cpuinfo)
    code = ('import sys, gluonbert.serve.deploy as d; d.CPUINFO = sys.argv[1]; '
            'from gluonbert.cli import main; sys.exit(main(sys.argv[2:]))')
    done = subprocess.run([sys.executable, '-c', code, str(cpuinfo), 'quantize', '--model-dir',
                           finetuned['model_dir'], '--calib-data', finetuned['train'], '--out-dir',
                           str(tmp_path / 'int8b'), '--num-calib-batches', '1'],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert 'WARNING: this CPU (Old CPU) has no VNNI' in done.stderr
    assert 'int8 model (7-bit weights, mixed scales' in done.stdout


def test_weight_width_follows_the_cpu_and_the_request():
    old, new = {'cpu': 'Old CPU', 'vnni': False}, {'cpu': 'New CPU', 'vnni': True}
    assert deploy.weight_width(new)[:2] == ('channel-wise', 8)
    assert deploy.weight_width(old)[:2] == ('mixed', 7)
    assert 'no VNNI' in deploy.weight_width(old)[2]
    assert deploy.weight_width(new, channel_wise=False)[:2] == ('tensor-wise', 8)
    assert deploy.weight_width(old, channel_wise=False)[:2] == ('tensor-wise', 7)
    assert deploy.weight_width(new, weight_bits=7)[:2] == ('mixed', 7)
    # asked for channel-wise: 8 bits (MXNet quantizes those weights itself), even without VNNI
    assert deploy.weight_width(old, channel_wise=True)[:2] == ('channel-wise', 8)
    assert deploy.weight_width(old, weight_bits=8)[:2] == ('channel-wise', 8)
    with pytest.raises(ConfigError, match='channel_wise=True with weight_bits=7'):
        deploy.weight_width(new, channel_wise=True, weight_bits=7)
    with pytest.raises(ConfigError, match='weight_bits=6'):
        deploy.weight_width(new, weight_bits=6)
    done = run_cli('quantize', '--model-dir', 'x', '--calib-data', 'y', '--out-dir', 'z',
                   '--channel-wise', '--tensor-wise')
    assert done.returncode == 2 and 'not allowed with argument' in done.stderr


def test_int8_products_of_this_cpu():
    """The reason for 7-bit weights, on one quantized FullyConnected: oneDNN adds two
    neighbouring u8 x s8 products into a saturating int16 unless the CPU has VNNI (s8 inputs
    are shifted to u8 by 128 first), so 127 * 127 twice comes out as 255 instead of 32258;
    with weights in [-64, 64] every pair sum fits, on any CPU."""
    def product(data, weight):
        out, _, _ = mx.nd.contrib.quantized_fully_connected(
            mx.nd.array([data], dtype='int8'), mx.nd.array([weight], dtype='int8'),
            mx.nd.zeros((1,), dtype='int8'), *[mx.nd.array([v]) for v in (-127, 127, -127, 127,
                                                                          -1, 1)],
            num_hidden=1)
        return int(out.asnumpy()[0, 0])
    pad = [0] * 14
    assert product([127, 127] + pad, [127, 127] + pad) == (2 * 127 * 127 if VNNI else 255)
    assert product([127, 0, 127] + pad[1:], [127, 0, 127] + pad[1:]) == 2 * 127 * 127
    for x, w in ((127, 64), (-128, -64), (127, -64), (-128, 64)):
        assert product([x, x] + pad, [w, w] + pad) == 2 * x * w
    rng = np.random.default_rng(0)
    data = rng.integers(-128, 128, size=(64, 96))
    weight = rng.integers(-64, 65, size=(32, 96))
    out, _, _ = mx.nd.contrib.quantized_fully_connected(
        mx.nd.array(data, dtype='int8'), mx.nd.array(weight, dtype='int8'),
        mx.nd.zeros((32,), dtype='int8'), *[mx.nd.array([v]) for v in (-128, 127, -64, 64,
                                                                       -1, 1)],
        num_hidden=32)
    np.testing.assert_array_equal(out.asnumpy(), data @ weight.T)


@pytest.mark.skipif(VNNI, reason='8-bit weights are exact on a CPU with VNNI')
def test_8bit_weights_are_wrong_without_vnni(tmp_path, finetuned, caplog):
    """What the 7-bit weights avoid: the same model with 8-bit weights, on this CPU, is off by
    more than the bounds the other tests hold 7-bit exports to; quantize and serving say so."""
    with caplog.at_level(logging.WARNING, logger='gluonbert.serve.deploy'):
        result = deploy.quantize(finetuned['model_dir'], finetuned['train'],
                                 str(tmp_path / 'int8'), num_calib_batches=3, weight_bits=8)
        assert 'saturate here' in result['warning'] and result['granularity'] == 'channel-wise'
        assert json.load(open(tmp_path / 'int8' / 'deploy.json'))['quantization'][
            'weight_bits'] == 8
        fp32 = predict(finetuned['model_dir'], finetuned['dev'], str(tmp_path / 'fp32.tsv'),
                       batch_size=16)
        int8 = predict(str(tmp_path / 'int8'), finetuned['dev'], str(tmp_path / 'int8.tsv'),
                       batch_size=16)
    assert 'outputs are wrong' in caplog.text        # load_exported's warning
    probs32, probs8 = (read_predictions(tmp_path / f'{n}.tsv')[2] for n in ('fp32', 'int8'))
    assert np.abs(probs8 - probs32).mean() >= 0.02
    assert fp32['count'] == int8['count'] == 64


def test_this_machine_isa_is_read():
    isa = deploy.int8_isa()
    if not os.path.isfile('/proc/cpuinfo'):
        pytest.skip('no /proc/cpuinfo on this system')
    flags = open('/proc/cpuinfo').read()
    assert isa['vnni'] == ('avx512_vnni' in flags or 'avx_vnni' in flags)
    assert isa['cpu'] != 'unknown'


def test_int8_benchmark_script_runs_and_skips_without_data(tmp_path, finetuned):
    script = os.path.join(ROOT, 'benchmarks', 'int8.py')
    done = subprocess.run([sys.executable, script, '--mrpc', str(tmp_path / 'absent.txt')],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith('skipped: ')
    done = subprocess.run([sys.executable, script, '--mrpc', finetuned['train'], '--model',
                           'bert_tiny_test', '--pairs', '64', '--repeats', '1',
                           '--calib-batches', '1', '--out', str(tmp_path / 'int8.json')],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.load(open(tmp_path / 'int8.json'))
    assert report['pairs'] == 64 and report['calib_samples'] == 32
    assert set(report['results']) == {'gluonbert_fp32', 'exported_fp32', 'int8'}
    assert all(r['pairs_per_s_best'] > 0 for r in report['results'].values())
    assert report['int8_vs_fp32_max_prob_diff'] < 0.05
    assert '| int8 |' in done.stdout
    # with a fine-tuned model: its dev split timed and scored, fp32 and int8 side by side
    done = subprocess.run([sys.executable, script, '--mrpc', finetuned['train'], '--finetuned',
                           finetuned['model_dir'], '--repeats', '1', '--calib-batches', '1',
                           '--out', str(tmp_path / 'tuned.json')],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.load(open(tmp_path / 'tuned.json'))
    assert report['pairs'] == 64 and report['model'] == 'bert_2_32_4'
    fp32, int8 = report['results']['gluonbert_fp32'], report['results']['int8']
    assert fp32['accuracy'] >= 0.9 and abs(int8['accuracy'] - fp32['accuracy']) <= 0.05


def test_int8_benchmark_with_huggingface_beside_it(tmp_path, finetuned):
    pytest.importorskip('torch', reason='the --hf comparison needs PyTorch')
    pytest.importorskip('transformers', reason='the --hf comparison needs transformers')
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'int8.py'),
                           '--mrpc', finetuned['train'], '--model', 'bert_tiny_test', '--pairs',
                           '32', '--repeats', '1', '--calib-batches', '1', '--hf', '--out',
                           str(tmp_path / 'hf.json')], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.load(open(tmp_path / 'hf.json'))['results']
    assert {'hf_eager_fp32', 'hf_compile_fp32', 'hf_dynamic_int8',
            'hf_bf16_autocast'} <= set(results)
    assert all(r['pairs_per_s_best'] > 0 for r in results.values())


def test_int8_benchmark_token_budget_and_infer_base_columns(tmp_path, finetuned):
    """``--max-batch-tokens`` adds token-budget runs of fp32 and INT8 (same probabilities as
    the batches of --batch-size); ``--infer-base`` gives GFLOP/s of fp32 and INT8 inference
    beside both GEMM ceilings of the same run (tiny sizes here)."""
    script = os.path.join(ROOT, 'benchmarks', 'int8.py')
    done = subprocess.run([sys.executable, script, '--mrpc', finetuned['train'], '--model',
                           'bert_tiny_test', '--pairs', '64', '--repeats', '1',
                           '--calib-batches', '1', '--max-batch-tokens', '300',
                           '--tensor-wise', '--out', str(tmp_path / 'tokens.json')],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.load(open(tmp_path / 'tokens.json'))
    assert set(report['results']) == {'gluonbert_fp32', 'gluonbert_fp32_tokens300',
                                      'exported_fp32', 'int8', 'int8_tokens300',
                                      'int8_tensorwise', 'int8_tensorwise_tokens300'}
    budget, rows = report['batching']['tokens300'], report['batching']['batch_size']
    assert budget['real_tokens'] == rows['real_tokens'] and budget['batches'] > rows['batches']
    assert budget['padded_tokens'] <= 300 * budget['batches']
    done = subprocess.run([sys.executable, script, '--infer-base', '--base-model',
                           'bert_tiny_test', '--base-length', '32', '--base-vocab', '200',
                           '--gemm-size', '128', '--calib-batches', '1', '--base-batches', '1',
                           '--repeats', '1', '--profile', '--out', str(tmp_path / 'base.json')],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.load(open(tmp_path / 'base.json'))
    assert set(report['results']) == {'gluonbert_fp32', 'exported_fp32', 'int8', 'gemm_fp32',
                                      'gemm_int8'}
    assert report['ceilings']['int8'] > 0 and report['ceilings']['fp32'] > 0
    assert report['int8_fused_ops'] == ['_sg_mkldnn_fully_connected', '_sg_mkldnn_selfatt_qk',
                                        '_sg_mkldnn_selfatt_valatt']
    # bert_2_32_4 on 32 x 32 tokens: 2 layers x 2 x 1024 x (4 x 32^2 + 2 x 32 x 64) + 2 x 4 x
    # 32 x 32^2 x 32 for attention, + pooler 2 x 32 x 32^2 + classifier 2 x 32 x 32 x 2
    assert report['flops_per_pass'] == 2 * (2 * 1024 * (4 * 1024 + 2 * 32 * 64) +
                                            4 * 32 * 32 * 32 * 32) + 2 * 32 * 1024 + 4 * 32 * 32
    int8 = report['results']['int8']
    assert int8['fraction_of_ceiling'] == pytest.approx(int8['gflops_executed_best'] /
                                                        report['ceilings']['int8'])
    # every classifier graph skips the last layer's projection and feed-forward on 31 of 32
    # positions
    skipped = 2 * 32 * 31 * (32 * 32 + 2 * 32 * 64)
    for name in ('int8', 'exported_fp32', 'gluonbert_fp32'):
        assert report['results'][name]['flops_executed'] == report['flops_per_pass'] - skipped
    assert report['int8_vs_fp32_max_prob_diff'] < 0.05
    assert '| gemm_int8 |' in done.stdout and 'isa' in report
    profile = report['profile_ms']
    assert '_sg_mkldnn_fully_connected' in profile['int8'] and 'LayerNorm' in profile['int8']
    assert 'FullyConnected' in profile['exported_fp32']


def test_last_layer_runs_on_the_cls_position_only(tmp_path, finetuned):
    """The export keeps the classifier's [CLS]-only last layer (the slices that
    BERTEncoder.cls_rows_only traces after the last attention), with the outputs of the
    fine-tuned classifier that predict serves (gluonbert's kernels there)."""
    from gluonbert.serve.predict import load_classifier
    deploy.export(finetuned['model_dir'], str(tmp_path / 'fp32'))
    nodes = json.load(open(tmp_path / 'fp32' / 'model-symbol.json'))['nodes']
    assert not any(n['op'].startswith('gluonbert_') for n in nodes)
    # after the cut, the last layer's feed-forward input is one position long
    symbol = mx.sym.load(str(tmp_path / 'fp32' / 'model-symbol.json'))
    ffn = [n['name'] for n in nodes if n['op'] == 'FullyConnected' and 'ffn_1' in n['name']]
    internals = symbol.get_internals()
    shapes = dict(data0=(3, 9), data1=(3, 9), data2=(3,))
    assert internals[f'{ffn[-1]}_output'].infer_shape(**shapes)[1][0][:2] == (1, 3)
    assert internals[f'{ffn[0]}_output'].infer_shape(**shapes)[1][0][:2] == (9, 3)
    tuned, _, _ = load_classifier(finetuned['model_dir'], [mx.cpu()])
    served = deploy.load_exported(str(tmp_path / 'fp32'))
    rng = np.random.default_rng(0)
    ids = mx.nd.array(rng.integers(5, len(VOCAB), size=(3, 9)), dtype='int32')
    types = mx.nd.array(rng.integers(0, 2, size=(3, 9)), dtype='int32')
    lengths = mx.nd.array([9, 4, 1], dtype='int32')
    np.testing.assert_allclose(served(ids, types, lengths).asnumpy(),
                               tuned(ids, types, lengths).asnumpy(), atol=1e-5)
    assert json.load(open(tmp_path / 'fp32' / 'deploy.json'))['graph_rewrites'] == [
        'constants folded']
    with pytest.raises(ConfigError, match='CPU kernels'):
        tuned.export(str(tmp_path / 'with-kernels'))