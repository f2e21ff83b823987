"""One run per output directory, checked before anything is written (issue 26): a resumed run
is the run it resumes (another learning rate or batch size is refused; another length only
when asked, and said), a start that fails leaves the directory as it was, restoring an edited
corpus makes the resume work again, and a directory another process runs in is refused."""
import fcntl
import json
import pathlib

import pytest

from gluonbert.errors import ConfigError, DataFormatError, FileSystemError, GluonBERTError
from gluonbert.train.config import DeviceConfig, FinetuneConfig, OptimizerConfig, PretrainConfig
from gluonbert.train.finetune import finetune
from gluonbert.train.pretrain import pretrain
from gluonbert.train.run_directory import LOCK_FILE, RunDirectory

from .synthetic import write_corpus, write_paraphrase_tsv


def _pretrain_config(data, out, **changes):
    values = dict(data=str(data), out_dir=str(out), model='bert_tiny_test', batch_size=8,
                  num_steps=4, checkpoint_interval=2, log_interval=1, max_predictions_per_seq=4,
                  progress=False, devices=DeviceConfig(cpus=1))
    values.update(changes)
    return PretrainConfig(**values)


def _snapshot(path):
    """Every file under ``path`` with its bytes (None when ``path`` does not exist)."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else 'dir')
            for p in sorted(path.rglob('*'))}


@pytest.mark.slow
def test_a_resumed_run_keeps_its_options(tmp_path, shards_dir, capsys):
    out = tmp_path / 'run'
    pretrain(_pretrain_config(shards_dir, out, stop_at_step=2))
    before = _snapshot(out)
    refused = [({'optimizer': OptimizerConfig(lr=1e-3)}, r'--lr 0\.0001 -> 0\.001'),
               ({'batch_size': 16, 'seed': 3}, r'--seed 0 -> 3; --batch-size 8 -> 16'),
               ({'num_steps': 6}, r'--num-steps 4 -> 6\).*--change-length')]
    for changes, message in refused:
        for flag in ('resume', 'resume_if_possible'):
            with pytest.raises(ConfigError, match=message):
                pretrain(_pretrain_config(shards_dir, out, **{flag: True}, **changes))
            assert _snapshot(out) == before          # run.json and the rest untouched
    # another length when asked: the schedule spans the new length, and the start says so
    capsys.readouterr()
    summary = pretrain(_pretrain_config(shards_dir, out, num_steps=6, resume=True,
                                        change_length=True))
    assert summary['finished'] and summary['steps'] == 6
    said = ''.join(capsys.readouterr())
    assert 'resumed from' in said and '--change-length: num_steps 4 -> 6' in said, said
    record = json.loads((out / 'run.json').read_text())
    assert record['config']['num_steps'] == 6
    assert record['resumes'][-1]['length'] == {'num_steps': [4, 6]}
    # a finished run says so, and trains nothing
    pretrain(_pretrain_config(shards_dir, out, num_steps=6, resume=True))
    said = ''.join(capsys.readouterr())
    assert 'is finished (update 6 of 6); nothing to train' in said, said
    assert 'updates 6..6' not in said


def _finetune_config(data_dir, source, out, **changes):
    values = dict(data_dir=str(data_dir), from_converted=source, out_dir=str(out),
                  max_seq_length=32, batch_size=16, epochs=1, progress=False)
    values.update(changes)
    return FinetuneConfig(**values)


def _bad_tsv(tmp_path):
    directory = tmp_path / 'bad'
    directory.mkdir()
    (directory / 'train.tsv').write_text('not a header\n')
    (directory / 'dev.tsv').write_text('not a header\n')
    return directory


def _msr_only(tmp_path):
    """The MSR training file alone: the dev set is a seeded share of it."""
    directory = tmp_path / 'msr'
    directory.mkdir()
    write_paraphrase_tsv(directory / 'msr_paraphrase_train.txt', 32, seed=1)
    return directory


def _partial_shards(tmp_path, shards_dir):
    (pathlib.Path(shards_dir) / 'prepare_pretraining.log').write_text('interrupted\n')
    return shards_dir


FAILED_STARTS = {
    'finetune bad TSV': (lambda t, p, c, s, corpus, vocab: _finetune_config(
        _bad_tsv(t), c, t / 'out'), DataFormatError, "header 'not a header'"),
    'finetune empty dev split': (lambda t, p, c, s, corpus, vocab: _finetune_config(
        _msr_only(t), c, t / 'out', dev_fraction=0.01), DataFormatError, 'no dev examples'),
    'finetune --max-seq-length too long': (lambda t, p, c, s, corpus, vocab: _finetune_config(
        p, c, t / 'out', max_seq_length=65), ConfigError, 'position table of 64 rows'),
    'finetune --max-seq-length too short': (lambda t, p, c, s, corpus, vocab: _finetune_config(
        p, c, t / 'out', max_seq_length=4), ConfigError, 'expected at least 5'),
    'finetune missing --hf-dir': (lambda t, p, c, s, corpus, vocab: _finetune_config(
        p, None, t / 'out', hf_dir=str(t / 'nowhere')), GluonBERTError, 'no such directory'),
    'pretrain corpus without sentences': (lambda t, p, c, s, corpus, vocab: _pretrain_config(
        _write(t / 'empty.txt', '\n\n'), t / 'out', vocab=vocab, max_seq_length=32),
        DataFormatError, 'holds no sentences'),
    'pretrain --max-seq-length too long': (lambda t, p, c, s, corpus, vocab: _pretrain_config(
        corpus, t / 'out', vocab=vocab, max_seq_length=65), ConfigError, 'position table'),
    'pretrain interrupted shards': (lambda t, p, c, s, corpus, vocab: _pretrain_config(
        _partial_shards(t, s), t / 'out'), DataFormatError, 'did not finish'),
    'out-dir under a file': (lambda t, p, c, s, corpus, vocab: _pretrain_config(
        s, pathlib.Path(corpus) / 'out'), FileSystemError, 'is a file, not a directory'),
}


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize('existing', [False, True], ids=['new out-dir', 'existing out-dir'])
@pytest.mark.parametrize('case', list(FAILED_STARTS))
def test_a_failed_start_leaves_the_directory_as_it_was(tmp_path, paraphrase_dir, converted_dir,
                                                       shards_dir, corpus_txt, corpus_vocab_txt, case,
                                                       existing):
    make, error, message = FAILED_STARTS[case]
    config = make(tmp_path, paraphrase_dir, converted_dir, shards_dir, corpus_txt, corpus_vocab_txt)
    out = pathlib.Path(config.out_dir)
    if existing and case != 'out-dir under a file':
        out.mkdir()
        (out / 'notes.txt').write_text('the user keeps notes here\n')
    before = _snapshot(out)
    run = pretrain if isinstance(config, PretrainConfig) else finetune
    with pytest.raises(error, match=message):
        run(config)
    assert _snapshot(out) == before


@pytest.mark.slow
def test_the_corrected_command_runs_where_a_start_failed(tmp_path, corpus_txt, corpus_vocab_txt):
    """A start that failed after it had made its directory and prepared nothing usable (a
    corpus without sentences is found out while preparing) takes it all back: the same
    --out-dir then takes the corrected command without --overwrite."""
    out = tmp_path / 'run'
    empty = _write(tmp_path / 'empty.txt', '\n\n\n')
    with pytest.raises(DataFormatError, match='holds no sentences'):
        pretrain(_pretrain_config(empty, out, vocab=corpus_vocab_txt, max_seq_length=32))
    assert not out.exists()
    summary = pretrain(_pretrain_config(corpus_txt, out, vocab=corpus_vocab_txt, max_seq_length=32,
                                        num_steps=2))
    assert summary['finished'] and (out / 'model.params').exists()


@pytest.mark.slow
def test_restoring_the_edited_corpus_makes_the_resume_work(tmp_path, corpus_vocab_txt):
    """An edited corpus refuses the resume before the prepared data is touched; putting the
    original text back (same content, new modification time) resumes the run."""
    corpus = pathlib.Path(write_corpus(tmp_path / 'corpus.txt', num_docs=60))
    original = corpus.read_bytes()
    out = tmp_path / 'run'
    config = dict(vocab=corpus_vocab_txt, max_seq_length=32)
    pretrain(_pretrain_config(corpus, out, stop_at_step=2, **config))
    manifest = (out / 'data' / 'pretraining_data.json').read_bytes()
    corpus.write_bytes(original + b'w0x1 w0x2 w0x3 .\nw0x4 w0x5 .\n\n')
    with pytest.raises(ConfigError, match=r'corpus\.txt changed .*cannot resume.*Restore the '
                                          r'old input'):
        pretrain(_pretrain_config(corpus, out, resume=True, **config))
    assert (out / 'data' / 'pretraining_data.json').read_bytes() == manifest   # not rebuilt
    corpus.write_bytes(original)
    summary = pretrain(_pretrain_config(corpus, out, resume=True, **config))
    assert summary['finished'] and summary['resumed_from'] == 2


def test_a_directory_in_use_is_refused(tmp_path, shards_dir):
    """Another process holds the run's lock (a second command into the same --out-dir):
    refused, and nothing in the directory changes."""
    out = tmp_path / 'run'
    out.mkdir()
    with open(out / LOCK_FILE, 'a+') as lock:
        lock.write('pid 4242 on elsewhere\n')
        lock.flush()
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = _snapshot(out)
        with pytest.raises(ConfigError, match=r'in use by a running gluonbert command \(pid '
                                              r'4242 on elsewhere\)'):
            pretrain(_pretrain_config(shards_dir, out, num_steps=1))
        assert _snapshot(out) == before


@pytest.mark.slow
def test_a_start_killed_before_its_first_checkpoint_is_started_again(tmp_path, shards_dir):
    """What a start killed before its first checkpoint leaves (run.json, train.log) does not
    block the same command; another run is still refused there."""
    out = tmp_path / 'run'
    config = _pretrain_config(shards_dir, out, num_steps=2)
    directory = RunDirectory(config, 'pretrain')
    directory.inspect()
    directory.claim()
    directory.commit(None)
    directory.release()
    (out / 'train.log').write_text('pretrain: ... updates 0..2 (a fresh start)\n')
    with pytest.raises(ConfigError, match='holds another run'):
        pretrain(_pretrain_config(shards_dir, out, num_steps=2, seed=5))
    assert pretrain(config)['finished']


def test_dev_fraction_is_checked_up_front():
    for value in (0.0, 1.0, -0.2):
        with pytest.raises(ConfigError, match=r'dev_fraction=.*expected 0 < fraction < 1'):
            FinetuneConfig(dev_fraction=value)
