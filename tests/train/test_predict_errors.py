"""``gluonbert predict`` and fine-tuning starting points: named errors and exit code 2 instead
of tracebacks (issue 12). Run through the CLI in subprocesses, as users run them."""
import json
import os
import subprocess
import sys

import pytest

from .synthetic import VOCAB, write_paraphrase_tsv


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'gluonbert.cli', *args], capture_output=True,
                          text=True, timeout=300)


def assert_named_error(proc, *fragments):
    """Exit code 2, one line of error, no traceback, every fragment in the message."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr[-3000:]


def write_model_dir(directory, vocab=VOCAB, max_seq_length=32, vocab_size=None):
    """A directory as ``gluonbert finetune`` writes it (random tiny BERTClassifier), without
    running a fine-tuning: ``model.params``, ``finetune.json``, ``vocab.txt``."""
    import mxnet as mx

    from gluonbert.model import BERTClassifier, BERTModel, get_config
    os.makedirs(directory, exist_ok=True)
    config = get_config('bert_tiny_test', vocab_size=vocab_size or len(VOCAB))
    mx.random.seed(0)
    net = BERTClassifier(BERTModel(config, use_decoder=False, use_classifier=False),
                         num_classes=2, dropout=0.1)
    net.initialize()
    net.save_parameters(os.path.join(directory, 'model.params'))
    info = {'bert': config.to_dict(),
            'task': {'labels': ['0', '1'], 'text_a': None, 'text_b': None,
                     'label_column': None},
            'lower': True, 'max_seq_length': max_seq_length, 'dropout': 0.1,
            'source': 'test', 'best': {}}
    with open(os.path.join(directory, 'finetune.json'), 'w', encoding='utf-8') as f:
        json.dump(info, f, indent=2)
    with open(os.path.join(directory, 'vocab.txt'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(vocab) + '\n')
    return str(directory)


@pytest.fixture
def model_dir(tmp_path):
    return write_model_dir(tmp_path / 'model')


@pytest.fixture
def input_tsv(tmp_path):
    return write_paraphrase_tsv(tmp_path / 'dev.tsv', 6, seed=3)


def test_predict_works_on_the_hand_made_model_dir(tmp_path, model_dir, input_tsv):
    """The fixture is a valid model directory (so the failures below are the files' fault)."""
    proc = cli('predict', '--model-dir', model_dir, '--input', input_tsv, '--output',
               str(tmp_path / 'out.tsv'), '--cpus', '1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len((tmp_path / 'out.tsv').read_text().splitlines()) == 7


def test_corrupt_finetune_json(tmp_path, model_dir, input_tsv):
    info = os.path.join(model_dir, 'finetune.json')
    text = open(info, encoding='utf-8').read()
    with open(info, 'w', encoding='utf-8') as f:
        f.write(text[:len(text) // 2])          # cut in the middle, as by a full disk
    proc = cli('predict', '--model-dir', model_dir, '--input', input_tsv, '--output',
               str(tmp_path / 'out.tsv'), '--cpus', '1')
    assert_named_error(proc, f'{info}:', 'not valid JSON', 'finetune.json written by gluonbert')
    assert not (tmp_path / 'out.tsv').exists()


def test_finetune_json_with_wrong_types(tmp_path, model_dir, input_tsv):
    info = os.path.join(model_dir, 'finetune.json')
    values = json.load(open(info, encoding='utf-8'))
    values['task'] = ['0', '1']
    with open(info, 'w', encoding='utf-8') as f:
        json.dump(values, f)
    proc = cli('predict', '--model-dir', model_dir, '--input', input_tsv, '--output',
               str(tmp_path / 'out.tsv'), '--cpus', '1')
    assert_named_error(proc, f'{info}: "task" is [\'0\', \'1\']; expected a JSON dict')


def test_output_is_a_directory(tmp_path, model_dir, input_tsv):
    out = tmp_path / 'predictions'
    out.mkdir()
    proc = cli('predict', '--model-dir', model_dir, '--input', input_tsv, '--output', str(out),
               '--cpus', '1')
    assert_named_error(proc, f'--output {out} is a directory',
                       os.path.join(str(out), 'predictions.tsv'))
    assert os.listdir(out) == []


@pytest.mark.slow
def test_predict_refuses_to_write_over_its_input(tmp_path, model_dir, input_tsv):
    before = open(input_tsv, 'rb').read()
    for output in (input_tsv, os.path.join(os.path.dirname(input_tsv), '.', 'dev.tsv')):
        proc = cli('predict', '--model-dir', model_dir, '--input', input_tsv, '--output',
                   output, '--cpus', '1')
        assert_named_error(proc, f'--output {output} is the --input file')
    assert open(input_tsv, 'rb').read() == before


@pytest.mark.slow
def test_file_system_errors_are_named(tmp_path, model_dir, input_tsv):
    """A missing --input, an --output or --out-dir below a file: exit 2, the path named."""
    missing = str(tmp_path / 'no-such.tsv')
    assert_named_error(cli('predict', '--model-dir', model_dir, '--input', missing,
                           '--output', str(tmp_path / 'out.tsv')),
                       f'{missing}: no such input file')
    below_a_file = os.path.join(input_tsv, 'out.tsv')
    assert_named_error(cli('predict', '--model-dir', model_dir, '--input', input_tsv,
                           '--output', below_a_file),
                       f'{below_a_file}: cannot write the predictions', 'is a file')
    assert_named_error(cli('finetune', '--from-converted', model_dir, '--out-dir', below_a_file),
                       f'{below_a_file}: cannot create the run directory', 'is a file')


def _truncate(path):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])


def test_truncated_params_from_converted(tmp_path, converted_dir, paraphrase_dir):
    params = os.path.join(converted_dir, 'model.params')
    _truncate(params)
    proc = cli('finetune', '--data-dir', paraphrase_dir, '--from-converted', converted_dir,
               '--out-dir', str(tmp_path / 'run'), '--epochs', '1', '--cpus', '1',
               '--max-seq-length', '32', '--no-progress')
    assert_named_error(proc, f'{params}: not a readable MXNet .params file')
    assert not (tmp_path / 'run').exists()       # the failed start took its directory back


def test_truncated_params_pretrained_checkpoint(tmp_path, converted_dir, paraphrase_dir):
    """A finished pretraining run directory: model.params, gluonbert_config.json, vocab.txt."""
    run = tmp_path / 'pretrained'
    run.mkdir()
    for name in ('model.params', 'vocab.txt'):
        (run / name).write_bytes(open(os.path.join(converted_dir, name), 'rb').read())
    (run / 'gluonbert_config.json').write_text(
        open(os.path.join(converted_dir, 'gluonbert_config.json')).read())
    _truncate(run / 'model.params')
    proc = cli('finetune', '--data-dir', paraphrase_dir, '--pretrained-checkpoint', str(run),
               '--out-dir', str(tmp_path / 'run'), '--epochs', '1', '--cpus', '1',
               '--max-seq-length', '32', '--no-progress')
    assert_named_error(proc, f'{run / "model.params"}: not a readable MXNet .params file')


def test_truncated_model_params_in_predict(tmp_path, model_dir, input_tsv):
    params = os.path.join(model_dir, 'model.params')
    _truncate(params)
    proc = cli('predict', '--model-dir', model_dir, '--input', input_tsv, '--output',
               str(tmp_path / 'out.tsv'), '--cpus', '1')
    assert_named_error(proc, f'{params}: not a readable MXNet .params file')
