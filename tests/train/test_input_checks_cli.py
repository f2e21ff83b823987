"""The hybridized models of ``gluonbert finetune`` and ``gluonbert predict`` check their inputs
(issue 12): a sequence longer than the position table or an id outside the model's vocabulary
ends the command with exit code 2 and a message, instead of finite numbers."""
import os

import pytest

from .synthetic import VOCAB, WORDS
from .test_predict_errors import assert_named_error, cli, write_model_dir

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

# 40 + 40 words: 83 tokens with [CLS] and two [SEP], more than bert_tiny_test's 64 positions
LONG_A = ' '.join(WORDS[i % len(WORDS)] for i in range(40))
LONG_B = ' '.join(WORDS[(i + 7) % len(WORDS)] for i in range(40))


def _append_long_pair(path, index=9999):
    with open(path, 'a', encoding='utf-8') as f:
        f.write(f'1\t{index}\t{index + 1}\t{LONG_A}\t{LONG_B}\n')


def test_finetune_max_seq_length_beyond_the_position_table(tmp_path, paraphrase_dir,
                                                           converted_dir):
    _append_long_pair(os.path.join(paraphrase_dir, 'train.tsv'))
    proc = cli('finetune', '--data-dir', paraphrase_dir, '--from-converted', converted_dir,
               '--max-seq-length', '600', '--out-dir', str(tmp_path / 'run'), '--epochs', '1',
               '--batch-size', '16', '--cpus', '1', '--no-progress')
    # refused at start-up, before any batch
    assert_named_error(proc, '--max-seq-length 600', 'position table of 64 rows')


def test_finetune_vocabulary_larger_than_the_model(tmp_path, paraphrase_dir, converted_dir):
    """A converted model whose vocab.txt has more tokens than its embedding table: refused when
    the model is loaded, naming the file (before any batch could hold such an id)."""
    extra = [f'new{i}' for i in range(30)]
    with open(os.path.join(converted_dir, 'vocab.txt'), 'a', encoding='utf-8') as f:
        f.write('\n'.join(extra) + '\n')
    with open(os.path.join(paraphrase_dir, 'train.tsv'), 'a', encoding='utf-8') as f:
        f.write(f'1\t9999\t10000\t{WORDS[0]} new29\t{WORDS[1]}\n')
    proc = cli('finetune', '--data-dir', paraphrase_dir, '--from-converted', converted_dir,
               '--max-seq-length', '32', '--out-dir', str(tmp_path / 'run'), '--epochs', '1',
               '--batch-size', '16', '--cpus', '1', '--no-progress')
    assert_named_error(proc, f'{os.path.join(converted_dir, "vocab.txt")} has '
                             f'{len(VOCAB) + 30} tokens but the model has '
                             f'vocab_size={len(VOCAB)}')
    assert not os.path.exists(tmp_path / 'run' / 'finetune.json')


def test_predict_input_longer_than_the_position_table(tmp_path):
    model_dir = write_model_dir(tmp_path / 'model', max_seq_length=600)
    data = tmp_path / 'dev.tsv'
    data.write_text('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
                    f'0\t1\t2\t{WORDS[0]} {WORDS[1]}\t{WORDS[2]}\n')
    _append_long_pair(data)
    proc = cli('predict', '--model-dir', model_dir, '--input', str(data), '--output',
               str(tmp_path / 'out.tsv'), '--cpus', '1')
    assert_named_error(proc, f'{data} with the model in {model_dir}',
                       'sequence length 83 exceeds the position table of 64 rows')
    assert not (tmp_path / 'out.tsv').exists()


def test_predict_vocabulary_larger_than_the_model(tmp_path):
    """A vocab.txt replaced by a larger one: ids past the model's embedding table."""
    extra = [f'new{i}' for i in range(30)]
    model_dir = write_model_dir(tmp_path / 'model', vocab=VOCAB + extra, vocab_size=len(VOCAB))
    data = tmp_path / 'dev.tsv'
    data.write_text('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
                    f'0\t1\t2\t{WORDS[0]} new29\t{WORDS[2]}\n')
    proc = cli('predict', '--model-dir', model_dir, '--input', str(data), '--output',
               str(tmp_path / 'out.tsv'), '--cpus', '1')
    assert_named_error(proc, f'token_ids contains {len(VOCAB) + 29}; expected ids in '
                             f'[0, {len(VOCAB)}) (vocab_size={len(VOCAB)})')
