"""End-to-end pretraining: it learns, it resumes exactly (also after SIGKILL), and it writes
its outputs."""
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from gluonbert.errors import ConfigError
from gluonbert.train.config import DeviceConfig, OptimizerConfig, PretrainConfig
from gluonbert.train.pretrain import pretrain


def tiny(tmp_path, corpus, vocab, name, **changes):
    values = dict(data=corpus, vocab=vocab, out_dir=str(tmp_path / name), model='bert_tiny_test',
                  max_seq_length=32, max_predictions_per_seq=5, batch_size=16, num_steps=12,
                  log_interval=2, checkpoint_interval=6, progress=False,
                  optimizer=OptimizerConfig(lr=2e-3, warmup_ratio=0.1),
                  devices=DeviceConfig(cpus=2))
    values.update(changes)
    return PretrainConfig(**values)


def read_params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


def assert_same_run(a_dir, b_dir, a_history, b_history):
    for a, b in zip(a_history, b_history):
        assert a['step'] == b['step']
        for key in ('mlm_loss', 'nsp_loss', 'mlm_acc', 'nsp_acc'):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a['step'], key)
    a, b = (read_params(os.path.join(d, 'model.params')) for d in (a_dir, b_dir))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_tiny_bert_learns_mlm_and_nsp(pretrained_run):
    summary = pretrained_run                 # 300 steps on 2 CPU contexts (see conftest)
    first, last = summary['first'], summary['last']
    assert first['mlm_loss'] > 3.4                     # about ln(72) at the start
    assert last['mlm_loss'] < 0.8 * first['mlm_loss']
    assert last['nsp_acc'] > 0.75 and first['nsp_acc'] < 0.65
    assert last['pairs_per_s'] > 0 and last['tokens_per_s'] > last['pairs_per_s']
    out = summary['out_dir']
    for name in ('model.params', 'loss_curve.png', 'train.log', 'summary.json',
                 'gluonbert_config.json', 'vocab.txt', 'tokenizer_config.json'):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert open(os.path.join(out, 'loss_curve.png'), 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    log = open(os.path.join(out, 'train.log')).read()
    assert 'step 300 | mlm_loss' in log and 'pairs_per_s' in log


def test_resume_is_exact(tmp_path, corpus_txt, corpus_vocab_txt):
    straight = pretrain(tiny(tmp_path, corpus_txt, corpus_vocab_txt, 'straight'))
    half = pretrain(tiny(tmp_path, corpus_txt, corpus_vocab_txt, 'halves', stop_at_step=6))
    assert not half['finished'] and not os.path.exists(os.path.join(half['out_dir'],
                                                                    'model.params'))
    resumed = pretrain(tiny(tmp_path, corpus_txt, corpus_vocab_txt, 'halves', resume=True))
    assert resumed['resumed_from'] == 6
    assert_same_run(straight['out_dir'], resumed['out_dir'], straight['history'],
                    resumed['history'])


def test_npz_shards_static_masking_one_device(tmp_path, shards_dir):
    config = PretrainConfig(data=shards_dir, out_dir=str(tmp_path / 'run'),
                            model='bert_tiny_test', batch_size=8, num_steps=4, log_interval=2,
                            checkpoint_interval=2, keep_checkpoints=1, progress=False)
    summary = pretrain(config)
    assert [r['step'] for r in summary['history']] == [2, 4]
    assert os.listdir(tmp_path / 'run' / 'checkpoints') == ['step-00000004']


def test_untied_embeddings_run_writes_its_config_and_is_queried_back(tmp_path, corpus_txt,
                                                                     corpus_vocab_txt):
    """``gluonbert pretrain --untie-embeddings`` with recipe 2's ``bert_4_128_4``: the run's
    config says so, the head's own output weight is saved, and the fill-mask pipeline rebuilds
    the same model from it."""
    import json
    from gluonbert.cli import main
    from gluonbert.serve.pipelines import PretrainedBERT
    out = tmp_path / 'untied'
    assert main(['pretrain', '--data', corpus_txt, '--vocab', corpus_vocab_txt, '--out-dir', str(out),
                 '--model', 'bert_4_128_4', '--max-seq-length', '32', '--max-predictions-per-seq',
                 '5', '--batch-size', '8', '--num-steps', '4', '--log-interval', '2',
                 '--no-progress', '--untie-embeddings']) == 0
    config = json.load(open(out / 'gluonbert_config.json'))
    assert config['tie_word_embeddings'] is False
    assert (config['num_layers'], config['units'], config['num_heads']) == (4, 128, 4)
    params = read_params(str(out / 'model.params'))
    assert not np.array_equal(params['decoder.3.weight'], params['word_embed.0.weight'])
    model = PretrainedBERT(str(out))
    assert model.net.decoder[3].weight is not model.net.encoder.word_embedding.weight
    np.testing.assert_array_equal(model.net.decoder[3].weight.data().asnumpy(),
                                  params['decoder.3.weight'])


def test_float16_on_cpu_is_refused(tmp_path, shards_dir):
    config = PretrainConfig(data=shards_dir, out_dir=str(tmp_path / 'run'),
                            devices=DeviceConfig(cpus=2, dtype='float16'))
    with pytest.raises(ConfigError, match='float16 needs GPUs'):
        pretrain(config)


def test_shard_ids_beyond_the_model_vocabulary_are_refused(tmp_path):
    from .synthetic import write_random_shards
    shards = write_random_shards(tmp_path / 'big', num_shards=1, vocab_size=500)
    config = PretrainConfig(data=shards, out_dir=str(tmp_path / 'run'), model='bert_tiny_test',
                            batch_size=8, num_steps=1, progress=False)
    with pytest.raises(ConfigError, match=r'part-0-00000.npz holds token id \d+ but the model '
                                          r'has vocab_size=100'):
        pretrain(config)


def test_max_seq_length_is_checked_before_data_and_kept_by_shards(tmp_path, corpus_txt,
                                                                 corpus_vocab_txt, shards_dir):
    """Raw text longer than the model's positions is refused before any data is prepared;
    shards keep the length they were made with (16 here): another length is refused, none
    given uses theirs."""
    out = tmp_path / 'text'
    with pytest.raises(ConfigError, match='--max-seq-length 128: the model has a position '
                                          'table of 64 rows'):
        pretrain(PretrainConfig(data=corpus_txt, vocab=corpus_vocab_txt, out_dir=str(out),
                                model='bert_tiny_test', progress=False))
    assert not (out / 'data').exists()
    config = dict(data=shards_dir, model='bert_tiny_test', batch_size=8, num_steps=1,
                  progress=False)
    with pytest.raises(ConfigError, match='examples of 16 tokens; expected --max-seq-length 32'):
        pretrain(PretrainConfig(out_dir=str(tmp_path / 'a'), max_seq_length=32, **config))
    assert pretrain(PretrainConfig(out_dir=str(tmp_path / 'b'), **config))['finished']


def test_raw_text_needs_a_vocabulary(tmp_path, corpus_txt):
    with pytest.raises(ConfigError, match='--vocab'):
        pretrain(PretrainConfig(data=corpus_txt, out_dir=str(tmp_path / 'run')))


def _cli(tmp_path, corpus, vocab, out, *extra):
    return [sys.executable, '-m', 'gluonbert.cli', 'pretrain', '--data', corpus, '--vocab', vocab,
            '--out-dir', str(tmp_path / out), '--model', 'bert_tiny_test', '--cpus', '2',
            '--max-seq-length', '32', '--max-predictions-per-seq', '5', '--batch-size', '16',
            '--num-steps', '40', '--log-interval', '5', '--checkpoint-interval', '5',
            '--lr', '2e-3', '--no-progress', *extra]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, corpus_txt, corpus_vocab_txt):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    subprocess.run(_cli(tmp_path, corpus_txt, corpus_vocab_txt, 'straight'), check=True, env=env,
                   capture_output=True, timeout=300)
    proc = subprocess.Popen(_cli(tmp_path, corpus_txt, corpus_vocab_txt, 'killed'), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / 'killed' / 'checkpoints'
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if checkpoints.is_dir() and any(n.startswith('step-') for n in os.listdir(checkpoints)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    assert not (tmp_path / 'killed' / 'model.params').exists()
    done = subprocess.run(_cli(tmp_path, corpus_txt, corpus_vocab_txt, 'killed', '--resume'),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'pretrained 40 steps' in done.stdout
    log = open(tmp_path / 'killed' / 'train.log').read()
    assert log.count('pretrain: BERTConfig') == 2                   # started twice
    straight_params = read_params(str(tmp_path / 'straight' / 'model.params'))
    resumed_params = read_params(str(tmp_path / 'killed' / 'model.params'))
    for name, value in straight_params.items():
        np.testing.assert_allclose(resumed_params[name], value, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
