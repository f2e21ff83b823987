"""Ctrl-C and SIGTERM in every stage (issue 26): data preparation stops within seconds with
130 / 143 and leaves no shards that a later command would take for complete; the raw-text
stage of ``pretrain`` stops as well and takes back the run directory it made. The commands
are started as a shell starts a background job: SIGINT ignored, which Python then keeps
unless the command handles it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from gluonbert.errors import DataFormatError
from gluonbert.train.config import PretrainConfig
from gluonbert.train.pretrain import pretrain

from .synthetic import write_corpus

#: Real processes: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

CLI = [sys.executable, '-m', 'gluonbert.cli']


def _background_job():
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # what `command &` does in a script


def _start(args):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_background_job)


def _stop_while(proc, started, sig, timeout=120):
    """Sends ``sig`` once ``started()`` holds; returns (exit code, output, seconds to exit)."""
    deadline = time.monotonic() + timeout
    while not started():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, 'the stage never started'
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, 'the stage ended before the signal: use a larger corpus'
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f'still running 60 s after {sig.name}') from None
    return proc.returncode, output, time.monotonic() - sent


@pytest.fixture(scope='module')
def big_corpus(tmp_path_factory):
    """Text that takes several seconds to prepare (20,000 documents, 3 MB)."""
    return write_corpus(tmp_path_factory.mktemp('big') / 'big.txt', num_docs=20000)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_prepare_pretraining_stops_and_keeps_no_partial_shards(tmp_path, big_corpus, corpus_vocab_txt,
                                                               sig):
    out = tmp_path / 'shards'
    proc = _start(CLI + ['prepare-pretraining', '--input', big_corpus, '--vocab', corpus_vocab_txt,
                         '--output-dir', str(out), '--max-seq-length', '32',
                         '--examples-per-shard', '500', '--shuffle-buffer', '1'])
    code, output, seconds = _stop_while(
        proc, lambda: any(n.startswith('part-') for n in os.listdir(out))
        if out.is_dir() else False, sig)
    print(f'{sig.name}: exit {code} {seconds:.1f} s after the signal')
    assert code == 128 + sig, output
    assert seconds < 10
    assert f'stopped by {sig.name}' in output and 'no shard was kept' in output, output
    assert 'Traceback' not in output, output
    assert not [n for n in os.listdir(out) if n.startswith('part-')], os.listdir(out)
    # what is left (the log of the stopped preparation) is refused, by name
    with pytest.raises(DataFormatError, match='a preparation that did not finish'):
        pretrain(PretrainConfig(data=str(out), out_dir=str(tmp_path / 'run'),
                                model='bert_tiny_test', progress=False))
    assert not (tmp_path / 'run').exists()


def test_partial_shards_without_a_manifest_are_refused(tmp_path, big_corpus, corpus_vocab_txt):
    """Shards a preparation had finished when it was stopped (killed: no cleanup at all)
    are never read as a data set: they carry their temporary name until the end."""
    out = tmp_path / 'shards'
    proc = _start(CLI + ['prepare-pretraining', '--input', big_corpus, '--vocab', corpus_vocab_txt,
                         '--output-dir', str(out), '--max-seq-length', '32',
                         '--examples-per-shard', '500', '--shuffle-buffer', '1'])
    code, _, _ = _stop_while(proc, lambda: any(n.startswith('part-') for n in os.listdir(out))
                             if out.is_dir() else False, signal.SIGKILL)
    assert code == -signal.SIGKILL
    left = sorted(os.listdir(out))
    assert any(n.endswith('.npz.partial') for n in left) and \
        not any(n.endswith('.npz') for n in left), left
    with pytest.raises(DataFormatError, match='a preparation that did not finish'):
        pretrain(PretrainConfig(data=str(out), out_dir=str(tmp_path / 'run'),
                                model='bert_tiny_test', progress=False))


def test_ctrl_c_in_the_raw_text_stage_of_pretrain(tmp_path, big_corpus, corpus_vocab_txt):
    out = tmp_path / 'run'
    proc = _start(CLI + ['pretrain', '--data', big_corpus, '--vocab', corpus_vocab_txt, '--model',
                         'bert_tiny_test', '--max-seq-length', '32', '--batch-size', '8',
                         '--num-steps', '5', '--out-dir', str(out), '--no-progress'])
    code, output, seconds = _stop_while(
        proc, lambda: (out / 'data' / 'prepare_pretraining.log').exists(), signal.SIGINT)
    print(f'exit {code} {seconds:.1f} s after SIGINT')
    assert code == 130, output
    assert seconds < 10
    assert 'stopped by SIGINT' in output and 'left as it was' in output, output
    assert 'step 1 ' not in output, output                          # it did not train
    assert not out.exists()                    # the directory this start made is gone
