"""The training engine through the CLI, as users run it: exact mid-epoch fine-tuning resume
(also after SIGKILL), no example dropped, one run per output directory, SIGTERM, and the same
update from two dist_sync workers as from one process."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

CLI = [sys.executable, '-m', 'gluonbert.cli']


def _finetune_args(source, data, out, *extra):
    return CLI + ['finetune', '--from-converted', source, '--data-dir', data, '--out-dir', out,
                  '--max-seq-length', '32', '--batch-size', '16', '--eval-batch-size', '32',
                  '--lr', '1e-3', '--no-progress', *extra]


def _run(args, **kwargs):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    return proc.returncode, proc.stdout + proc.stderr


def _params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def _epoch_metrics(out):
    keys = ('epoch', 'dev_accuracy', 'dev_f1', 'dev_loss', 'train_loss', 'train_accuracy',
            'train_count')
    epochs = json.load(open(os.path.join(out, 'metrics.json')))['epochs']
    return [{k: e[k] for k in keys} for e in epochs]


def _assert_same_run(a, b):
    pa, pb = _params(pathlib.Path(a, 'model.params')), _params(pathlib.Path(b, 'model.params'))
    assert pa.keys() == pb.keys()
    for name in pa:
        assert np.array_equal(pa[name], pb[name]), name
    # logged sums are float32 on each device; a resumed run adds its restored part on device 0
    for ea, eb in zip(_epoch_metrics(a), _epoch_metrics(b), strict=True):
        assert ea == pytest.approx(eb, rel=1e-6)


@pytest.mark.parametrize('cpus', ['1', '2'])
def test_finetune_resumes_exactly_mid_epoch(tmp_path, paraphrase_dir, converted_dir, cpus):
    """Stopped after update 7 of a 10-update epoch (``--stop-at-step``), then ``--resume``:
    the same best model, the same per-epoch metrics as an uninterrupted run."""
    common = ['--epochs', '3', '--cpus', cpus, '--checkpoint-interval', '4']
    straight, halves = str(tmp_path / 'straight'), str(tmp_path / 'halves')
    code, log = _run(_finetune_args(converted_dir, paraphrase_dir, straight, *common))
    assert code == 0, log
    code, log = _run(_finetune_args(converted_dir, paraphrase_dir, halves, *common,
                                    '--stop-at-step', '7'))
    assert code == 0, log
    assert not os.path.exists(os.path.join(halves, 'metrics.json'))
    assert os.path.isdir(os.path.join(halves, 'checkpoints', 'step-00000007'))
    code, log = _run(_finetune_args(converted_dir, paraphrase_dir, halves, *common, '--resume'))
    assert code == 0, log
    assert 'resumed from' in log
    _assert_same_run(straight, halves)


def test_finetune_killed_then_resumed_equals_uninterrupted(tmp_path, paraphrase_dir,
                                                           converted_dir):
    # 6 epochs of 10 updates: killed at its first checkpoint (update 3), 57 before its end
    common = ['--epochs', '6', '--cpus', '1', '--checkpoint-interval', '3', '--log-interval',
              '50']
    straight, killed = str(tmp_path / 'straight'), str(tmp_path / 'killed')
    code, log = _run(_finetune_args(converted_dir, paraphrase_dir, straight, *common))
    assert code == 0, log
    proc = subprocess.Popen(_finetune_args(converted_dir, paraphrase_dir, killed, *common),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = pathlib.Path(killed, 'checkpoints')
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None \
            and not list(checkpoints.glob('step-*')):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    assert not os.path.exists(os.path.join(killed, 'metrics.json'))
    code, log = _run(_finetune_args(converted_dir, paraphrase_dir, killed, *common, '--resume'))
    assert code == 0, log
    _assert_same_run(straight, killed)


def test_no_example_is_dropped(tmp_path, paraphrase_dir, converted_dir):
    """Three devices: bucket-final batches of one or two rows run on fewer devices, and every
    training example is counted in every epoch."""
    from gluonbert.train.config import DeviceConfig, FinetuneConfig
    from gluonbert.train.finetune import FinetuningTask, finetune
    config = FinetuneConfig(data_dir=paraphrase_dir, from_converted=converted_dir,
                            out_dir=str(tmp_path / 'run'), max_seq_length=32, batch_size=16,
                            epochs=2, progress=False, devices=DeviceConfig(cpus=3))
    summary = finetune(config)
    task = FinetuningTask(config)
    task.build(type('Run', (), {'cluster': type('C', (), {'rank': 0, 'num_workers': 1,
                                                          'is_main': True}),
                                'contexts': [mx.cpu()], 'out_dir': config.out_dir}))
    sizes = [len(batch) for batch in task.batches._epoch_order(1)]
    assert min(sizes) < 3, sizes          # the case exists in this data
    assert [e['train_count'] for e in summary['epochs']] == [160, 160]


def _pretrain_args(shards, out, steps, interval, *extra):
    return CLI + ['pretrain', '--data', shards, '--model', 'bert_tiny_test', '--batch-size', '8',
                  '--num-steps', str(steps), '--checkpoint-interval', str(interval),
                  '--out-dir', str(out), '--no-progress', *extra]


def test_an_out_dir_belongs_to_one_run(tmp_path, shards_dir):
    out = str(tmp_path / 'run')
    code, log = _run(_pretrain_args(shards_dir, out, 4, 2, '--resume'))
    assert code == 2 and 'no valid checkpoint' in log and 'Traceback' not in log, log
    code, log = _run(_pretrain_args(shards_dir, out, 4, 2, '--resume-if-possible'))
    assert code == 0, log
    code, log = _run(_pretrain_args(shards_dir, out, 4, 2))
    assert code == 2 and 'holds another run' in log and '--overwrite' in log, log
    assert 'Traceback' not in log
    # --overwrite: the old run's checkpoints (step 4) are gone
    code, log = _run(_pretrain_args(shards_dir, out, 2, 1, '--overwrite'))
    assert code == 0, log
    steps = sorted(p.name for p in pathlib.Path(out, 'checkpoints').iterdir())
    assert steps == ['step-00000001', 'step-00000002'], steps
    code, log = _run(_pretrain_args(shards_dir, out, 4, 2, '--resume'))    # 4 steps, not 2
    assert code == 2 and '(--num-steps 2 -> 4)' in log and '--change-length' in log, log
    code, log = _run(_pretrain_args(shards_dir, out, 4, 2, '--resume', '--change-length'))
    assert code == 0 and 'resumed from' in log and 'step-00000002' in log, log
    assert json.load(open(os.path.join(out, 'run.json')))['task'] == 'pretrain'


def test_sigterm_stops_with_a_checkpoint_and_resume_finishes(tmp_path, shards_dir):
    out = pathlib.Path(tmp_path / 'run')
    proc = subprocess.Popen(_pretrain_args(shards_dir, out, 100000, 100000, '--log-interval',
                                           '1'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / 'train.log').exists():
        time.sleep(0.05)
    while time.monotonic() < deadline and 'step 3 ' not in (out / 'train.log').read_text():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, log
    assert 'stopped by SIGTERM' in log and '--resume' in log and 'Traceback' not in log, log
    saved = [p.name for p in (out / 'checkpoints').iterdir()]
    assert len(saved) == 1 and saved[0].startswith('step-'), saved      # no .tmp-* left
    # a stale temporary from a killed save is removed at the next start
    (out / 'checkpoints' / '.tmp-step-00000009-12345').mkdir()
    stopped_at = int(saved[0].split('-')[1])
    code, log = _run(_pretrain_args(shards_dir, out, stopped_at + 2, 100000, '--resume',
                                    '--change-length'))
    assert code == 0 and f'resumed from {out / "checkpoints" / saved[0]}' in log, log
    assert f'--change-length: num_steps 100000 -> {stopped_at + 2}' in log, log
    assert not list((out / 'checkpoints').glob('.tmp-*'))
    assert (out / 'model.params').exists()


@pytest.mark.parametrize('servers', ['1', '2'])
def test_two_finetuning_workers_equal_one_process_accumulating_two(tmp_path, paraphrase_dir,
                                                                  converted_dir, servers):
    """2 dist_sync workers with batch 16 take the update one process takes with batch 16 x
    --accumulate 2 (losses normalised over the whole update), and agree bit for bit."""
    common = ['--epochs', '1', '--cpus', '1', '--dropout', '0']
    one = str(tmp_path / 'one')
    code, log = _run(_finetune_args(converted_dir, paraphrase_dir, one, *common,
                                    '--accumulate', '2'))
    assert code == 0, log
    two = str(tmp_path / 'two')
    code, log = _run(CLI + ['launch', '-n', '2', '-s', servers, '--'] + _finetune_args(
        converted_dir, paraphrase_dir, two, *common, '--kvstore', 'dist_sync',
        '--save-all-ranks'))
    assert code == 0, log
    rank0 = _params(pathlib.Path(two, 'model.params'))
    rank1 = _params(pathlib.Path(two, 'model.rank1.params'))
    reference = _params(pathlib.Path(one, 'model.params'))
    for name in reference:
        assert np.array_equal(rank0[name], rank1[name]), name
        np.testing.assert_allclose(rank0[name], reference[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert _epoch_metrics(one)[0]['train_count'] == 160


def test_resume_refuses_data_rebuilt_from_edited_text(tmp_path, corpus_txt, corpus_vocab_txt):
    """Raw text prepared into OUT_DIR/data is rebuilt when the text changes; the checkpoints
    were trained on the old shards, so --resume is refused, naming what changed."""
    out = str(tmp_path / 'run')
    args = CLI + ['pretrain', '--data', corpus_txt, '--vocab', corpus_vocab_txt, '--model',
                  'bert_tiny_test', '--max-seq-length', '32', '--batch-size', '8',
                  '--num-steps', '4', '--checkpoint-interval', '2', '--out-dir', out,
                  '--no-progress']
    code, log = _run(args + ['--stop-at-step', '2'])
    assert code == 0, log
    with open(corpus_txt, 'a', encoding='utf-8') as f:
        f.write('w0x1 w0x2 w0x3 .\nw0x4 w0x5 .\n\n')
    code, log = _run(args + ['--resume'])
    assert code == 2 and 'cannot resume' in log and 'corpus.txt' in log, log
    assert 'Traceback' not in log
    code, log = _run(args + ['--overwrite'])
    assert code == 0, log
